"""Device authorization requests and responses (RFC 8628 §3.1–§3.2, C13–C16)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._redact import redact
from ..exceptions import InvalidResponse
from .client_auth import ClientAuth, apply_client_auth
from .errors import coerce_seconds, decode_json_object, optional_str, required_str
from .messages import FormPairs, HttpRequest, HttpResponse
from .params import ScopeInput, add_param, normalize_scope
from .token import JSON_ACCEPT, GrantType, token_request

#: C0 controls, DEL and C1 controls (ESC and CSI start terminal escape sequences).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default."
DEFAULT_INTERVAL = 5


def device_authorization_request(
    url: str,
    auth: ClientAuth,
    *,
    scope: ScopeInput = None,
    params: Iterable[tuple[str, str | Iterable[str] | None]] = (),
) -> HttpRequest:
    """RFC 8628 §3.1: the usual client authentication for confidential clients (Google needs the secret),
    optional scope, audience/resource extensions. Empty values are omitted. ``client_id`` is always in the body,
    also next to Basic authentication: §3.1 allows it, and django-oauth-toolkit rejects the request without it."""
    form: FormPairs = []
    headers = dict(JSON_ACCEPT)
    secrets = apply_client_auth(auth, url, form, headers)
    if auth.client_id and not any(name == "client_id" for name, _ in form):
        form.append(("client_id", auth.client_id))
    add_param(form, "scope", normalize_scope(scope))
    for name, value in params:
        add_param(form, name, value)
    return HttpRequest(url=url, form=form, headers=headers, secrets=tuple(s for s in secrets if s))


def device_token_request(
    url: str, auth: ClientAuth, device_code: str, params: Iterable[tuple[str, str | Iterable[str] | None]] = ()
) -> HttpRequest:
    """RFC 8628 §3.4: the polling request. No scope is defined for it (C16)."""
    return token_request(url, GrantType.DEVICE_CODE, auth, params=[("device_code", device_code), *params])


@dataclass(frozen=True)
class DeviceAuthorization:
    """A validated device authorization response. ``device_code`` is a secret and never shown (C15)."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int = DEFAULT_INTERVAL
    verification_uri_complete: str | None = None
    #: Azure AD's ready-made instruction text, when sent.
    message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Wall-clock receipt time, for display (``DevicePrompt.expires_at``). Not part of the value: two answers with
    #: the same members are equal, as the seed's ``DeviceCodeResponse`` dataclass compared them.
    received_at: float = field(default=0.0, compare=False)
    #: Receipt time on the driver's monotonic clock: polling measures the code's remaining life from it.
    received_monotonic: float | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(device_code={redact(self.device_code)}, user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, expires_in={self.expires_in}, interval={self.interval})"
        )


_D = TypeVar("_D", bound=DeviceAuthorization)


def parse_device_authorization(
    response: HttpResponse,
    secrets: Iterable[str] = (),
    *,
    cls: type[_D] = DeviceAuthorization,  # type: ignore[assignment]
) -> _D:
    """RFC 8628 §3.2, with the vendor quirks: ``verification_url`` (Google, Azure v1), string numbers and
    ``message`` (Azure v1), no ``interval`` (oidc-provider: default 5)."""
    what = "device authorization endpoint"
    obj = decode_json_object(response, what, secrets)
    return device_authorization_from_json(obj, status=response.status_code, received_at=response.received_at, cls=cls)


def device_authorization_from_json(
    obj: Mapping[str, Any],
    *,
    status: int = 200,
    received_at: float = 0.0,
    cls: type[_D] = DeviceAuthorization,  # type: ignore[assignment]
) -> _D:
    what = "device authorization endpoint"
    if not isinstance(obj, Mapping):
        raise InvalidResponse(f"{what} returned JSON that is not an object", status_code=status)
    obj = dict(obj)
    if obj.get("verification_uri") in (None, "") and obj.get("verification_url") not in (None, ""):
        obj["verification_uri"] = obj["verification_url"]
    for name in ("user_code", "verification_uri", "verification_uri_complete"):
        value = obj.get(name)
        if isinstance(value, str) and _CONTROL.search(value):
            # Shown to a person (and logged): an escape sequence would drive their terminal (OSC 52 writes the
            # clipboard, OSC 8 disguises a link), a newline forges log lines. No URI (RFC 3986 §2) and no code
            # a person types (RFC 8628 §6.1) holds one: a broken or hostile server.
            raise InvalidResponse(f"{what}: {name!r} contains control characters", status_code=status)
    expires_in = coerce_seconds(obj, "expires_in", what, required=True, status=status)
    interval = coerce_seconds(obj, "interval", what, status=status)
    assert expires_in is not None
    return cls(
        device_code=required_str(obj, "device_code", what, status=status),
        user_code=required_str(obj, "user_code", what, status=status),
        verification_uri=required_str(obj, "verification_uri", what, status=status),
        expires_in=expires_in,
        interval=DEFAULT_INTERVAL if interval is None else interval,
        verification_uri_complete=optional_str(obj, "verification_uri_complete", what, status=status),
        message=_cleaned(optional_str(obj, "message", what, status=status)),
        raw=obj,
        received_at=received_at,
    )


def _cleaned(text: str | None) -> str | None:
    """Azure's ``message``: instruction prose, not something a person types, so control characters (a terminal
    escape, a forged log line) become spaces rather than ending the login as in the code and link."""
    return None if text is None else _CONTROL.sub(" ", text)
