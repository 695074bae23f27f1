"""Token revocation requests and responses (RFC 7009, C29)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..exceptions import InvalidResponse
from .client_auth import ClientAuth, apply_client_auth, single_use
from .errors import decode_json_object
from .messages import FormPairs, HttpRequest, HttpResponse
from .token import JSON_ACCEPT


def revocation_request(url: str, auth: ClientAuth, token: str, token_type_hint: str | None = None) -> HttpRequest:
    """RFC 7009 §2.1: ``token`` and an optional ``token_type_hint`` (``refresh_token`` or ``access_token``), with
    the same client authentication as at the token endpoint."""
    form: FormPairs = []
    headers = dict(JSON_ACCEPT)
    secrets = [*apply_client_auth(auth, url, form, headers), token]
    form.append(("token", token))
    if token_type_hint:
        form.append(("token_type_hint", token_type_hint))
    renew = functools.partial(revocation_request, url, auth, token, token_type_hint) if single_use(auth) else None
    return HttpRequest(url=url, form=form, headers=headers, secrets=tuple(s for s in secrets if s), renew=renew)


def check_revocation_response(response: HttpResponse, secrets: Iterable[str] = ()) -> None:
    """RFC 7009 §2.2: HTTP 200 means revoked (also for a token the server did not know); the body is ignored.
    Anything else raises the typed error its body describes (§2.2.1 ``unsupported_token_type``; a 503 is
    transient: the token may still be valid, retry later), or ``InvalidResponse`` for another 2xx: it is not the
    answer §2.2 defines, so the token is not known to be revoked."""
    status = response.status_code
    if status == 200:
        return
    if 200 <= status < 300:
        raise InvalidResponse(
            f"revocation endpoint answered HTTP {status}, not 200 (RFC 7009 §2.2): the token may not be revoked",
            status_code=status,
        )
    decode_json_object(response, "revocation endpoint", secrets)  # raises for every non-2xx answer
    raise AssertionError("unreachable: a non-200 answer always raises")  # pragma: no cover
