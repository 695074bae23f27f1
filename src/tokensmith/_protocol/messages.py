"""Plain data passed between the protocol core and the transport."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    #: Builds the same request anew, for client authentication that must differ per request (a JWT assertion
    #: with a fresh ``jti``, RFC 7523); None when the request can be sent again as it is.
    renew: Callable[[], HttpRequest] | None = field(default=None, repr=False, compare=False)
    #: ``renew`` calls a user's callable that may block (a KMS or HSM signer): a driver on an event loop calls it
    #: in a worker thread (``tokensmith._flow.fresh_request``).
    renew_may_block: bool = field(default=False, repr=False, compare=False)

    def fresh(self) -> HttpRequest:
        """This request, ready to be sent again: rebuilt when its client authentication is single-use (a
        retried or repeated request must not replay a ``jti`` the server has seen), else itself."""
        return self if self.renew is None else self.renew()

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
