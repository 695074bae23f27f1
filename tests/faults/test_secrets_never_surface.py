"""C10 at the edges the per-flow leak tests do not reach: everything an exception drags along (its chained causes
and contexts, their ``args``, the ``requests``/``httpx`` request and response objects they hold, the full
``traceback.format_exception`` rendering), server text the client repeats in its own messages, and DEBUG logs.

Every secret value is distinctive, so a plain substring search is reliable. Each test drives a public entry point
against the fault server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests

import tokensmith
from fault_server import FaultServer, Reply
from tokensmith import token_client as tc

CLIENT_SECRET = "CSECRET-q7w8e9r0t1y2"
REFRESH = "RTOKEN-a1s2d3f4g5h6"
PROXY_PASSWORD = "PROXYPW-z9x8c7v6b5n4"
SECRETS = (CLIENT_SECRET, REFRESH, PROXY_PASSWORD)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and everything reachable from it: causes, contexts, and exceptions held in ``args`` or as a
    ``reason`` (urllib3 wraps that way)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]
        todo += [a for a in e.args if isinstance(a, BaseException)]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)


def _held(obj: object) -> str:
    """What a request or response object an exception holds would show to code that looks at it."""
    parts = [repr(obj)]
    for name in ("url", "body", "headers", "content", "_content", "text"):
        try:
            parts.append(repr(getattr(obj, name, None)))
        except Exception:  # a streamed httpx body that was never read, a property that raises
            continue
    return "\n".join(parts)


def everything(error: BaseException) -> str:
    """All the text an exception can surface: str, repr, args and the objects it holds, for it and every
    exception it reaches, plus the rendered traceback with its chain."""
    parts = ["".join(traceback.format_exception(error))]
    for e in _chain(error):
        parts += [str(e), repr(e), repr(e.args)]
        for name in ("request", "response", "doc"):
            try:
                held = getattr(e, name, None)  # httpx raises RuntimeError for a request it was never given
            except RuntimeError:
                continue
            if held is not None:
                parts.append(_held(held))
    return "\n".join(parts)


def _assert_clean(text: str, secrets: Iterable[str] = SECRETS) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} surfaced:\n{text[max(0, text.find(secret) - 300) :][:600]}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def _refreshing(url: str, auth: Any, **kwargs: Any) -> tokensmith.TokenClient:
    client = tokensmith.TokenClient(url, auth=auth, session=kwargs.pop("session", requests.Session()), **kwargs)
    client.store.save(client.cache_key, tokensmith.Token("at-old", expires_at=1.0, refresh_token=REFRESH))
    return client


# --- transport failures: the chained requests / httpx exception holds the request we sent ------------------------


@pytest.mark.parametrize("auth", [tokensmith.ClientSecretPost, tokensmith.ClientSecretBasic])
@pytest.mark.parametrize("failure", ["dropped", "refused"])
def test_a_transport_failure_carries_no_request_secret_in_its_chain(
    fault_server: FaultServer, auth: Any, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """requests' exceptions carry the PreparedRequest (form body with the refresh token, the Basic header or the
    client secret in the body); chained as the cause, every traceback renderer and error tracker can reach it."""
    fault_server.default("/token", Reply(drop=True))
    url = fault_server.url("/token") if failure == "dropped" else f"http://127.0.0.1:{_closed_port()}/token"
    client = _refreshing(url, auth("client", CLIENT_SECRET))
    with caplog.at_level(logging.DEBUG, logger="tokensmith"), pytest.raises(tokensmith.ConnectError) as info:
        client.get_token()
    assert isinstance(info.value.__cause__, requests.ConnectionError)  # still chained, for debugging
    basic = tokensmith.basic_authorization("client", CLIENT_SECRET).partition(" ")[2]
    _assert_clean(everything(info.value) + caplog.text, (*SECRETS, basic))


def test_a_transport_failure_through_a_proxy_with_credentials_shows_neither(caplog: pytest.LogCaptureFixture) -> None:
    proxy = f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:{_closed_port()}"
    client = _refreshing(
        "https://idp.example.test/token",
        tokensmith.ClientSecretPost("client", CLIENT_SECRET),
        proxies={"https": proxy, "http": proxy},
    )
    with caplog.at_level(logging.DEBUG, logger="tokensmith"), pytest.raises(tokensmith.ConnectError) as info:
        client.get_token()
    _assert_clean(everything(info.value) + caplog.text)


def test_a_compat_transport_failure_carries_no_request_secret_in_its_chain(fault_server: FaultServer) -> None:
    fault_server.default("/token", Reply(drop=True))
    header = tokensmith.basic_authorization("client", CLIENT_SECRET)
    with pytest.raises(requests.ConnectionError) as info:
        tc.get_token(
            fault_server.url("/token"),
            authorization_header=header,
            grant_type=tc.GrantType.REFRESH_TOKEN,
            refresh_token=REFRESH,
            session=requests.Session(),
        )
    _assert_clean(everything(info.value), (*SECRETS, header.partition(" ")[2]))


@pytest.mark.parametrize("failure", ["dropped", "refused"])
def test_an_async_transport_failure_carries_no_request_secret_in_its_chain(
    fault_server: FaultServer, failure: str
) -> None:
    """httpx's exceptions carry the httpx.Request (its body holds the refresh token and the client secret)."""
    fault_server.default("/token", Reply(drop=True))
    url = fault_server.url("/token") if failure == "dropped" else f"http://127.0.0.1:{_closed_port()}/token"

    async def go() -> BaseException:
        async with tokensmith.AsyncTokenClient(
            url, auth=tokensmith.ClientSecretPost("client", CLIENT_SECRET)
        ) as client:
            client.store.save(client.cache_key, tokensmith.Token("at-old", expires_at=1.0, refresh_token=REFRESH))
            with pytest.raises(tokensmith.ConnectError) as info:
                await client.get_token()
            return info.value

    error = asyncio.run(go())
    assert error.__cause__ is not None  # still chained, for debugging
    _assert_clean(everything(error))


# --- server text repeated in our own messages --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["token_type"])
def test_a_token_response_member_echoing_what_we_sent_is_scrubbed_from_the_error(
    fault_server: FaultServer, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unusable ``token_type`` is quoted in the error: a server (or a proxy) that put our refresh token or
    client secret there must not get it into the message."""
    for echoed in (REFRESH, CLIENT_SECRET):
        body: dict[str, object] = {"access_token": "at-new", "token_type": "Bearer", "expires_in": 300}
        body[field] = echoed
        fault_server.default("/token", Reply(json=body))
        client = _refreshing(fault_server.url("/token"), tokensmith.ClientSecretPost("client", CLIENT_SECRET))
        with caplog.at_level(logging.DEBUG, logger="tokensmith"), pytest.raises(tokensmith.InvalidResponse) as info:
            client.get_token()
        _assert_clean(everything(info.value) + caplog.text)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=502, body=f"<html>{REFRESH} {CLIENT_SECRET}</html>", content_type="text/html"),
        Reply(
            status=200, body=f'{{"access_token": "{REFRESH}", "token_type": "{CLIENT_SECRET}', content_type="text/html"
        ),
        Reply(json={"access_token": "at-new", "token_type": "Bearer", "expires_in": f"{REFRESH} {CLIENT_SECRET}"}),
    ],
    ids=["html", "cut-json", "expires_in"],
)
@pytest.mark.parametrize("api", ["client", "compat"])
def test_an_unusable_body_reflecting_what_we_sent_stays_out_of_the_error(
    fault_server: FaultServer, reply: Reply, api: str
) -> None:
    """The JSON decoder's error keeps the whole body in ``.doc``, float()'s quotes the value; an error raised while
    handling them keeps them as ``__context__`` even ``from None``, and the body may reflect what we sent."""
    fault_server.default("/token", reply)
    url = fault_server.url("/token")
    with pytest.raises(tokensmith.InvalidResponse) as info:
        if api == "client":
            _refreshing(url, tokensmith.ClientSecretPost("client", CLIENT_SECRET)).get_token()
        else:
            tc.get_token(url, client_id="c", grant_type=tc.GrantType.REFRESH_TOKEN, refresh_token=REFRESH)
    _assert_clean(everything(info.value))


# --- the command line's files: what it reports on a bad file drags none of the file along -----------------------


def test_a_bad_configuration_file_error_holds_none_of_the_file(tmp_path: Any) -> None:
    """A UnicodeDecodeError holds the whole file (a profile's client secret included); it used to stay on the
    ConfigError as its context, shown by any traceback of it."""
    from tokensmith.cli.config import ConfigError, load_config_file

    path = tmp_path / "config.toml"
    path.write_bytes(f'[profiles.ci]\nclient_secret = "{CLIENT_SECRET}"\n'.encode() + b"\xff\n")
    with pytest.raises(ConfigError, match="not valid TOML: not UTF-8 text") as raised:
        load_config_file(str(path))
    _assert_clean(everything(raised.value))
    path.write_bytes(f'[profiles.ci]\nclient_secret = "{CLIENT_SECRET}"\nbroken = \n'.encode())
    with pytest.raises(ConfigError, match="line 3") as raised:
        load_config_file(str(path))
    _assert_clean(everything(raised.value))


def test_a_bad_secret_or_key_file_error_holds_none_of_the_file(tmp_path: Any) -> None:
    """The decode error of a client secret file that is not UTF-8 holds the file's bytes; a JWK key file's JSON
    error holds the private key (``.doc``). Neither stays on the ConfigError (internals: the command line prints
    only the message, but any traceback of the error showed them)."""
    from tokensmith.cli import main as cli_main
    from tokensmith.cli.config import ConfigError, Settings

    settings = Settings()
    settings.client_secret_file = str(tmp_path / "secret")
    (tmp_path / "secret").write_bytes(CLIENT_SECRET.encode() + b"\xff")
    with pytest.raises(ConfigError, match="not UTF-8 text") as raised:
        cli_main._read_secret(settings)
    _assert_clean(everything(raised.value))

    key = '{"kty": "EC", "d": "' + CLIENT_SECRET + '", "x": '  # cut short
    with pytest.raises(ConfigError, match="neither PEM nor valid JWK JSON") as raised:
        cli_main._parse_private_key(str(tmp_path / "key.json"), key.encode(), Settings())
    _assert_clean(everything(raised.value))


@pytest.mark.parametrize(
    "url",
    [
        f"https://svc:{CLIENT_SECRET}@idp.example/token\u00a0",  # whitespace: the first check, before parsing
        f"ftp://svc:{CLIENT_SECRET}@idp.example/token",  # another scheme
        f"https://svc:{CLIENT_SECRET}@idp.example:99999999/token",  # cannot be parsed
        f"https://idp.example/token?client_secret={CLIENT_SECRET}\u200b",  # a secret in the query
    ],
)
def test_an_endpoint_refused_before_any_request_is_not_quoted_with_its_credentials(url: str) -> None:
    """C25/C10: a URL refused by the endpoint policy is named in the error (to say which setting is wrong), but
    without its userinfo or query: the first failing check used to quote it whole."""
    with pytest.raises(tokensmith.InvalidEndpointError) as raised:
        tokensmith.TokenClient(url, auth=tokensmith.ClientSecretBasic("svc", "other"))
    assert "idp.example" in str(raised.value)
    _assert_clean(everything(raised.value))
