"""RFC 7009 in the sans-IO core: the revocation request's form and authentication, and what counts as revoked."""

from __future__ import annotations

import json

import pytest

from tokensmith import ClientSecretBasic, NoClientAuth
from tokensmith import exceptions as exc
from tokensmith._protocol.messages import HttpResponse
from tokensmith._protocol.revocation import check_revocation_response, revocation_request


def test_public_client_request() -> None:
    request = revocation_request("https://as.example/revoke", NoClientAuth("cli"), "rt-1", "refresh_token")
    assert request.url == "https://as.example/revoke"
    assert request.form == [("client_id", "cli"), ("token", "rt-1"), ("token_type_hint", "refresh_token")]
    assert "rt-1" in request.secrets  # so it is scrubbed from anything an error quotes


def test_confidential_client_authenticates_as_at_the_token_endpoint() -> None:
    request = revocation_request("https://as.example/revoke", ClientSecretBasic("svc", "s:e cret"), "at-1")
    assert request.form == [("token", "at-1")]  # no hint given, none sent; no secret in the body
    assert request.headers["Authorization"].startswith("Basic ")
    assert {"s:e cret", "at-1"} <= set(request.secrets)


def _resp(status: int, body: object = b"", content_type: str = "application/json") -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {"content-type": content_type}, raw)


@pytest.mark.parametrize("body", [b"", b"not json", {"anything": 1}])
def test_200_is_revoked_whatever_the_body(body: object) -> None:
    check_revocation_response(_resp(200, body))


@pytest.mark.parametrize(
    ("response", "error", "transient"),
    [
        (_resp(400, {"error": "unsupported_token_type"}), exc.UnsupportedTokenType, False),
        (_resp(401, {"error": "invalid_client"}), exc.InvalidClient, False),
        (_resp(503, {"error": "temporarily_unavailable"}), exc.OAuthError, True),
        (_resp(503, b"<html>down</html>", "text/html"), exc.NonJSONResponse, True),
        (_resp(500, {"detail": "oops"}), exc.InvalidResponse, True),
        (_resp(202, {"status": "queued"}), exc.InvalidResponse, False),
        (_resp(204), exc.InvalidResponse, False),
        (HttpResponse(307, {"location": "https://elsewhere.example/"}), exc.UnexpectedRedirect, False),
    ],
    ids=["unsupported_token_type", "invalid_client", "503-oauth", "503-html", "500", "202", "204", "redirect"],
)
def test_anything_but_200_raises_a_typed_error(response: HttpResponse, error: type[Exception], transient: bool) -> None:
    with pytest.raises(error) as raised:
        check_revocation_response(response, ["rt-1"])
    assert isinstance(raised.value, exc.TokensmithError) and raised.value.transient is transient
