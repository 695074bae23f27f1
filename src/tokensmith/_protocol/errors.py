"""Turning a response into a JSON object or a typed error (RFC 6749 §5.2, C8)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

from .._redact import scrub
from ..exceptions import InvalidResponse, NonJSONResponse, SlowDown, UnexpectedRedirect, error_class_for
from .messages import HttpResponse

_MAX_DESCRIPTION = 500
#: A Retry-After beyond a day is a server bug; capping keeps the arithmetic finite.
MAX_RETRY_AFTER = 86400.0
# C0, DEL, C1, and the invisible format characters that can reorder or hide text on a terminal (bidi
# overrides, zero-width, line/paragraph separators): server text reaches users' terminals through messages.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]+")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date, RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # ASCII only: str.isdigit() also accepts "²" and "٣"
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


def _clean_text(value: object, secrets: Iterable[str] = ()) -> str | None:
    """A server-supplied string made safe to put in a message: secrets we sent scrubbed (before truncating, so
    a cut cannot leave half a secret behind), printable, bounded."""
    if not isinstance(value, str) or not value:
        return None
    value = _CONTROL.sub(" ", scrub(value, secrets)).strip()
    return value[:_MAX_DESCRIPTION] + ("…" if len(value) > _MAX_DESCRIPTION else "")


def describe_body(response: HttpResponse) -> str:
    """A secret-free description of an unusable body: status, content type, size. Never the body itself,
    which may be a proxy page reflecting what we sent."""
    ctype = response.headers.get("content-type", "no content type").split(";")[0].strip()
    return f"HTTP {response.status_code}, {ctype}, {len(response.body)} bytes"


def decode_json_object(response: HttpResponse, what: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The response's JSON object, or raise: an OAuth error response as its typed exception (also when sent
    with HTTP 200, as GitHub does), anything else unusable as ``InvalidResponse`` carrying the status."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"), response.received_at)
    if 300 <= status < 400:
        raise UnexpectedRedirect(
            f"{what} answered with a redirect (HTTP {status}); not following it with credentials (RFC 9700 §4.12)",
            status_code=status,
        )
    if not response.body.strip():
        raise NonJSONResponse(
            f"{what} returned an empty body ({describe_body(response)})",
            status_code=status,
            retry_after=retry_after,
        )
    obj: object
    try:
        obj = json.loads(response.body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        obj = _NOT_JSON
    if obj is _NOT_JSON:
        # Raised outside the except: the decoder's error (kept as __context__ even "from None") holds the whole body
        # in ``.doc``, and the body may be a page reflecting what we sent (C10).
        raise NonJSONResponse(
            f"{what} returned a non-JSON response ({describe_body(response)}); a proxy, gateway or login page "
            "may be answering instead of the authorization server",
            status_code=status,
            retry_after=retry_after,
        )
    if not isinstance(obj, dict):
        raise InvalidResponse(
            f"{what} returned JSON that is not an object (HTTP {status}, {type(obj).__name__})",
            status_code=status,
            retry_after=retry_after,
        )
    if "error" in obj and obj["error"] not in (None, ""):
        raise error_from_body(obj, status, retry_after, what, secrets)
    if not 200 <= status < 300:
        raise InvalidResponse(
            f"{what} returned HTTP {status} without an OAuth error code", status_code=status, retry_after=retry_after
        )
    return obj


def error_from_body(
    obj: dict[str, Any], status: int, retry_after: float | None, what: str, secrets: Iterable[str]
) -> Exception:
    code = obj["error"]
    if not isinstance(code, str) or not _clean_text(code):
        return InvalidResponse(
            f"{what} returned an error whose code is not a string (HTTP {status})",
            status_code=status,
            retry_after=retry_after,
        )
    secrets = tuple(secrets)
    code = (_clean_text(code, secrets) or "")[:100]
    description = _clean_text(obj.get("error_description"), secrets)
    uri = _clean_text(obj.get("error_uri"), secrets)
    cls = error_class_for(code)
    exc = cls(code, description, uri, status_code=status, retry_after=retry_after)
    if isinstance(exc, SlowDown):
        # GitHub sends the new interval along with slow_down; a larger one wins over the +5 s rule (C17).
        try:
            exc.interval = coerce_seconds(obj, "interval", what, status=status)
        except InvalidResponse:
            exc.interval = None
    return exc


def _float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


#: ``json.loads`` failed (a sentinel, as JSON ``null`` is None).
_NOT_JSON = object()


def _reject_constant(name: str) -> float:
    # NaN and Infinity are not JSON (RFC 8259); a number member holding one is a server bug.
    raise ValueError(name)


def coerce_seconds(
    obj: dict[str, Any], name: str, what: str, *, required: bool = False, status: int = 200
) -> int | None:
    """A lifetime/interval member as whole seconds. Accepts numbers and numeric strings (Azure AD v1 sends
    ``"3599"``); absent or null means None (``expires_in`` is only RECOMMENDED, C6); anything else is an error."""
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise InvalidResponse(f"{what} lacks the required member {name!r}", status_code=status)
        return None
    number: float
    if isinstance(value, bool):
        raise InvalidResponse(f"{what}: {name!r} is a boolean, not a number", status_code=status)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        parsed = _float(value)
        if parsed is None:  # raised here, not in an except whose float() error (quoting the value) stays its context
            raise InvalidResponse(f"{what}: {name!r} is not a number", status_code=status)
        number = parsed
    else:
        raise InvalidResponse(f"{what}: {name!r} is a {type(value).__name__}, not a number", status_code=status)
    if not math.isfinite(number) or number < 0:
        raise InvalidResponse(f"{what}: {name!r} is not a non-negative finite number", status_code=status)
    return math.ceil(number) if number < 2**62 else 2**62


def optional_str(obj: dict[str, Any], name: str, what: str, *, status: int = 200) -> str | None:
    """An optional string member; empty means absent."""
    value = obj.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidResponse(f"{what}: {name!r} is a {type(value).__name__}, not a string", status_code=status)
    return value


def required_str(obj: dict[str, Any], name: str, what: str, *, status: int = 200) -> str:
    value = optional_str(obj, name, what, status=status)
    if value is None:
        raise InvalidResponse(f"{what} lacks the required member {name!r}", status_code=status)
    return value
