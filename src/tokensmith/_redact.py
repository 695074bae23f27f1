"""The one redaction helper (C10): every secret shown anywhere (repr, log line, error message) passes here."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, urlsplit

#: Form and JSON members whose values are secrets. Anything logged or echoed is masked by these names.
SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "device_code",
        "client_secret",
        "client_assertion",
        "assertion",
        "code",
        "code_verifier",
        "password",
        "subject_token",
        "actor_token",
        "token",
    }
)

#: Request headers whose values are credentials (client authentication, a DPoP proof, a proxy's credentials).
SECRET_HEADERS = frozenset({"authorization", "dpop", "proxy-authorization"})

# Short secrets are fully masked; for longer ones a length hint helps debugging without revealing anything.
_MIN_LEN_FOR_HINT = 8
# Very short values would mask ordinary words; they are not secrets worth the name.
_MIN_SCRUB_LEN = 4


def redact(value: str | None) -> str:
    """A stand-in for a secret: never any of its characters, only whether it is set and its length."""
    if value is None:
        return "None"
    if len(value) < _MIN_LEN_FOR_HINT:
        return "'***'"
    return f"'***({len(value)} chars)'"


def encoded_forms(secret: str) -> set[str]:
    """The ways a secret we sent can come back in text: as sent, percent-encoded (path or form style, either
    case of hex digits), JSON-escaped, and base64 (a reflected ``Authorization`` header)."""
    escaped = json.dumps(secret)[1:-1]
    # JSON-escaped as Python writes it, and with "\/" as PHP and others write it.
    forms = {secret, quote(secret, safe=""), quote_plus(secret), escaped, escaped.replace("/", "\\/")}
    forms |= {f.lower() for f in forms if "%" in f}
    with contextlib.suppress(UnicodeEncodeError):  # lone surrogates have no bytes to encode
        forms.add(base64.b64encode(secret.encode()).decode("ascii"))
    return {f for f in forms if len(f) >= _MIN_SCRUB_LEN}


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Remove every occurrence of any secret, in any of its encoded forms, from text we did not write (a
    server's ``error_description`` or ``error_uri`` may echo what we sent it). Longest forms first, so a
    secret inside a longer encoded one is never left half-replaced."""
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= _MIN_SCRUB_LEN:
            forms |= encoded_forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, "***")
    return text


def redact_form(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A copy of form pairs fit for a debug log: secret members masked."""
    return [(k, redact(v) if k in SECRET_FIELDS else v) for k, v in pairs]


def request_secrets(
    form: Iterable[tuple[str, str]], headers: Mapping[str, str], declared: Iterable[str] = ()
) -> tuple[str, ...]:
    """Every secret a request carries: what its builder declared, the secret form members, and the credential
    headers (whole, and the part after the scheme)."""
    found = [*declared, *(v for k, v in form if k in SECRET_FIELDS)]
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            found += [value, value.partition(" ")[2]]
    return tuple(s for s in found if s)


def url_secrets(urls: Iterable[str | None]) -> tuple[str, ...]:
    """The userinfo (``user:password@``) of URLs such as proxy URLs: never to be shown."""
    found: list[str] = []
    for url in urls:
        try:
            parts = urlsplit(url or "")
            found += [parts.password or "", parts.netloc.rpartition("@")[0]]
        except ValueError:
            continue
    return tuple(s for s in found if s)


# A URL's query in a library's message ("Max retries exceeded with url: /token?x=y"): up to a space or quote.
_QUERY = re.compile(r"\?[^\s'\"()<>]*")


def scrub_library_text(text: str, secrets: Iterable[str | None]) -> str:
    """A message written by an HTTP library (requests, urllib3, httpx) about a failed request, fit to keep as an
    error's cause: URL queries cut, every secret of the request scrubbed."""
    return scrub(_QUERY.sub("", text), secrets)
