"""tokensmith's errors that are *also* the ``requests`` exceptions the seed module let through (issue 7, A.1).

The seed ``token_client`` raised ``requests.ConnectionError``, ``requests.Timeout`` and ``requests``'
``JSONDecodeError`` for failures that were not the authorization server's verdict, and its callers rely on
that: flytekit's ``DeviceCodeAuthenticator`` treats any ``AuthenticationError`` from a refresh as "refresh token
dead, log in again", but lets a ``requests`` exception through and keeps the token. So these failures are raised
as classes that inherit from both the typed tokensmith error and the ``requests`` exception: callers may catch
either. Kept out of ``tokensmith.exceptions`` because it imports ``requests`` (``import tokensmith`` stays light).
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import requests

from .exceptions import (
    AuthenticationError,
    ConnectError,
    InvalidResponse,
    NonJSONResponse,
    OAuthError,
    RequestTimeout,
    ServerError,
    TemporarilyUnavailable,
    TLSError,
    TokensmithError,
    UnexpectedRedirect,
)

__all__ = ["as_requests_error", "connect_error", "timeout_error", "tls_error"]


class _RequestsFields:
    # requests' RequestException.__init__ (which sets these) is not reached through RuntimeError's __init__.
    response: requests.Response | None = None
    request: Any = None


class _Timeout(RequestTimeout, requests.Timeout, _RequestsFields):
    pass


class _ConnectTimeout(RequestTimeout, requests.ConnectTimeout, _RequestsFields):
    pass


class _ConnectionError(ConnectError, requests.ConnectionError, _RequestsFields):
    pass


class _SSLError(TLSError, requests.exceptions.SSLError, _RequestsFields):
    pass


class _JSONDecodeFields(_RequestsFields):
    # json.JSONDecodeError's members, for code that reads them.
    msg = "Expecting value"
    doc = ""
    pos = 0
    lineno = 1
    colno = 1


for _cls, _public in (
    (_Timeout, RequestTimeout),
    (_ConnectTimeout, RequestTimeout),
    (_ConnectionError, ConnectError),
    (_SSLError, TLSError),
):
    # Shown under the public name it stands for (tracebacks, reprs).
    _cls.__name__ = _cls.__qualname__ = _public.__name__
    _cls.__module__ = "tokensmith"

_mixes: dict[tuple[type, type], type] = {}
_mixes_lock = threading.Lock()


def _mix(cls: type[TokensmithError], extra: type[BaseException]) -> type[TokensmithError]:
    """``cls`` (e.g. ``UnexpectedRedirect``) that is also ``extra``, under ``cls``'s own name; one per pair."""
    with _mixes_lock:
        mixed = _mixes.get((cls, extra))
        if mixed is None:
            fields: type = _JSONDecodeFields if issubclass(extra, ValueError) else _RequestsFields
            mixed = type(cls.__name__, (cls, extra, fields), {"__module__": "tokensmith", "__qualname__": cls.__name__})
            _mixes[(cls, extra)] = mixed
    return mixed


E = TypeVar("E", bound=TokensmithError)


def _rebuild(cls: type[E], error: TokensmithError) -> E:
    """An instance of ``cls`` carrying everything ``error`` carries, without calling ``__init__`` (the mixed
    bases disagree on constructor signatures)."""
    # OSError's constructor, not RuntimeError's, when the mix has an OSError base (every requests exception).
    new = OSError.__new__(cls, *error.args) if issubclass(cls, OSError) else cls.__new__(cls, *error.args)
    new.args = error.args
    new.__dict__.update(error.__dict__)
    new.__cause__ = error.__cause__
    new.__traceback__ = error.__traceback__
    return new


def timeout_error(message: str, *, connecting: bool) -> RequestTimeout:
    if connecting:
        return _ConnectTimeout(message, request_sent=False)
    return _Timeout(message)


def connect_error(message: str, *, request_sent: bool | None) -> ConnectError:
    return _ConnectionError(message, request_sent=request_sent)


def tls_error(message: str) -> TLSError:
    return _SSLError(message)


def as_requests_error(error: TokensmithError, *, non_ok_is_authentication_error: bool = False) -> TokensmithError:
    """``error`` as the seed module's callers expect it (see the module docstring):

    - a body that is not JSON -> also ``requests``' ``JSONDecodeError`` (the seed called ``response.json()``);
    - any other non-OAuth answer with a transient status (5xx, 429) -> also ``requests.HTTPError``;
    - a redirect (not followed, C27) -> also ``requests.HTTPError``, never an ``AuthenticationError``: a proxy or
      SSO gateway sending the client to its login page has not judged the credentials, and the seed, which
      followed it, failed on the HTML page with a ``requests`` exception (flytekit kept its refresh token);
    - any other non-OAuth answer with a non-2xx status -> also ``AuthenticationError``, as the seed reported it
      ("Status Code (...) received from IDP"); with ``non_ok_is_authentication_error`` (the device
      authorization request, where the seed never looked at the body) whatever the body;
    - an OAuth error that is no verdict on the credentials (``server_error``, ``temporarily_unavailable``, or a
      code no RFC registers, such as Auth0's ``too_many_requests``, on a 5xx or 429) -> an ``InvalidResponse``
      that is also ``requests.HTTPError``, keeping ``error``, ``error_description`` and ``retry_after``, and NOT an
      ``AuthenticationError``: flytekit's ``DeviceCodeAuthenticator`` deletes the stored credentials and starts a
      device login on any ``AuthenticationError`` from a refresh (only a registered rejection code such as
      ``invalid_grant`` is the server's verdict, whatever the status);
    - everything else unchanged (transport errors already are ``requests`` exceptions).
    """
    if not non_ok_is_authentication_error and _busy(error):
        return _rebuild(_mix(InvalidResponse, requests.HTTPError), error)
    if not isinstance(error, InvalidResponse) or isinstance(error, requests.RequestException | AuthenticationError):
        return error
    status = error.status_code
    if isinstance(error, UnexpectedRedirect) and not non_ok_is_authentication_error:
        return _rebuild(_mix(type(error), requests.HTTPError), error)
    non_ok = status is not None and not 200 <= status < 300
    if non_ok and non_ok_is_authentication_error:
        return _rebuild(_mix(type(error), AuthenticationError), error)
    if isinstance(error, NonJSONResponse):
        return _rebuild(_mix(type(error), requests.exceptions.JSONDecodeError), error)
    if error.transient:
        return _rebuild(_mix(type(error), requests.HTTPError), error)
    if non_ok:
        return _rebuild(_mix(type(error), AuthenticationError), error)
    return error


def _busy(error: TokensmithError) -> bool:
    """An OAuth error answer that says "try again later" rather than "these credentials are no good"."""
    return type(error) in (OAuthError, ServerError, TemporarilyUnavailable) and error.transient
