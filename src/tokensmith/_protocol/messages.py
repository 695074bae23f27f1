"""Plain data passed between the protocol core and the transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._redact import redact_form

FormPairs = list[tuple[str, str]]

# Marks "the transport handed us no decoded JSON"; distinct from a JSON ``null``.
NOT_DECODED: object = object()


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
    """What came back. ``headers`` keys are lower-case. ``json`` is set when the transport only had a decoded
    body (a test double's ``.json()``); otherwise ``body`` holds the capped raw bytes."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    json: object = NOT_DECODED
    #: Wall-clock time (``time.time()``) when the response arrived: the base for ``expires_at``.
    received_at: float = 0.0

    def __repr__(self) -> str:
        return f"HttpResponse(status_code={self.status_code}, {len(self.body)} bytes)"
