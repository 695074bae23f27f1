"""The flow runners (tokensmith._flow): one generator, run by the sync and the async runner, sees the same
results, and failures are thrown in at the ``yield`` where the flow can handle them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tokensmith._flow import Blocking, Flow, Get, Notify, Post, SimpleIO, Sleep, arun, build, fresh_request, run
from tokensmith._protocol.messages import HttpRequest, HttpResponse
from tokensmith._protocol.token import GrantType, token_request

REQUEST = HttpRequest("https://idp.example/token", [("grant_type", "client_credentials")])


def flow(log: list[str]) -> Flow[str]:
    first = yield Post(REQUEST)
    log.append(f"post {first.status_code}")
    try:
        yield Get("https://idp.example/fails")
    except ConnectionError as error:  # thrown in at the yield: the flow decides
        log.append(f"caught {error}")
    cancelled = yield Sleep(1.5)
    log.append(f"slept {cancelled}")
    value = yield Blocking(lambda: 42)
    yield Notify(log.append, f"notified {value}")
    return "done"


class SyncIO(SimpleIO):
    def __init__(self, log: list[str]) -> None:
        def get(url: str) -> HttpResponse:
            raise ConnectionError("refused")

        def sleeper(seconds: float) -> bool:
            log.append(f"sleep {seconds}")
            return False

        super().__init__(lambda request: HttpResponse(200), get, sleeper)


class AsyncIO:
    def __init__(self, log: list[str]) -> None:
        self._log = log

    async def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200)

    async def get(self, url: str) -> HttpResponse:
        raise ConnectionError("refused")

    async def sleep(self, seconds: float, cancel: Any) -> bool:
        self._log.append(f"sleep {seconds}")
        return False

    async def blocking(self, call: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(call)

    async def notify(self, callback: Callable[[Any], Any], value: Any) -> None:
        callback(value)


def test_the_sync_and_async_runners_agree() -> None:
    sync_log: list[str] = []
    async_log: list[str] = []
    assert run(flow(sync_log), SyncIO(sync_log)) == "done"
    assert asyncio.run(arun(flow(async_log), AsyncIO(async_log))) == "done"
    assert sync_log == async_log == ["post 200", "caught refused", "sleep 1.5", "slept False", "notified 42"]


def test_an_unhandled_failure_propagates_with_its_type() -> None:
    def failing() -> Flow[None]:
        yield Get("https://idp.example/fails")

    with pytest.raises(ConnectionError, match="refused"):
        run(failing(), SyncIO([]))
    with pytest.raises(ConnectionError, match="refused"):
        asyncio.run(arun(failing(), AsyncIO([])))


def test_a_sync_io_without_get_says_so() -> None:
    with pytest.raises(TypeError, match="GET"):
        run(flow([]), SimpleIO(lambda request: HttpResponse(200)))


def test_build_yields_a_blocking_effect_only_for_a_callable_that_may_block() -> None:
    """``build``: a user's callable that may block (a KMS signer) is a ``Blocking`` effect (off the loop in the async
    runner); anything else is built right there, no effect at all."""
    inline = build(lambda: "made", False)
    with pytest.raises(StopIteration) as done:
        next(inline)
    assert done.value.value == "made"
    offloaded = build(lambda: "made", True)
    effect = next(offloaded)
    assert isinstance(effect, Blocking) and effect.call() == "made"


def test_fresh_request_rebuilds_through_build_when_the_client_auth_may_block() -> None:
    """``token_request`` records whether its rebuild (a new single-use assertion) may block; ``fresh_request``
    honours it. A request without single-use auth is sent again as it is."""

    class KmsAuth:  # single-use like a JWT assertion, its signer a callable that may block
        client_id = "svc"
        single_use = True

        def __init__(self, may_block: bool) -> None:
            self.may_block = may_block
            self.made = 0

        def apply(self, form: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, ...]:
            self.made += 1
            form.append(("client_assertion", f"a{self.made}"))
            return ()

    class NotingIO(SyncIO):
        def blocking(self, call: Callable[[], Any]) -> Any:
            offloaded.append(call)
            return call()

    for may_block in (False, True):
        offloaded: list[object] = []
        request = token_request("https://idp.example/token", GrantType.CLIENT_CREDS, KmsAuth(may_block))
        assert request.renew_may_block is may_block
        renewed = run(fresh_request(request), NotingIO([]))
        assert dict(renewed.form)["client_assertion"] == "a2"
        assert len(offloaded) == (1 if may_block else 0)
    plain = HttpRequest("https://idp.example/token", [("grant_type", "client_credentials")])
    assert run(fresh_request(plain), SyncIO([])) is plain
