"""The one redaction helper (C10): every secret shown anywhere (repr, log line, error message) passes here."""

from __future__ import annotations

from collections.abc import Iterable

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

# Short secrets are fully masked; for longer ones a length hint helps debugging without revealing anything.
_MIN_LEN_FOR_HINT = 8


def redact(value: str | None) -> str:
    """A stand-in for a secret: never any of its characters, only whether it is set and its length."""
    if value is None:
        return "None"
    if len(value) < _MIN_LEN_FOR_HINT:
        return "'***'"
    return f"'***({len(value)} chars)'"


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Remove every occurrence of any secret from text we did not write (a server's error_description
    may echo what we sent it)."""
    for secret in secrets:
        # Very short values would mask ordinary words; they are not secrets worth the name.
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return text


def redact_form(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A copy of form pairs fit for a debug log: secret members masked."""
    return [(k, redact(v) if k in SECRET_FIELDS else v) for k, v in pairs]
