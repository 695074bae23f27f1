"""Plain data passed between the protocol core and the transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._redact import redact_form

FormPairs = list[tuple[str, str]]


@dataclass(frozen=True)
class HttpRequest:
    """A form POST to an OAuth endpoint. ``form`` keeps order and allows repeated keys (RFC 8693 ``resource``)."""

    url: str
    form: FormPairs
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Values that must never be echoed back to the caller (scrubbed from server error descriptions).
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"HttpRequest(url={self.url!r}, form={redact_form(self.form)!r})"


@dataclass(frozen=True)
class HttpResponse:
    """What came back: status, headers (keys lower-case) and the capped raw body bytes."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Wall-clock time (``time.time()``) when the response arrived: the base for ``expires_at``.
    received_at: float = 0.0

    def __repr__(self) -> str:
        return f"HttpResponse(status_code={self.status_code}, {len(self.body)} bytes)"
