"""A renewed token the store could not take (a full disk) is ahead of the store: the store still holds the token it
replaced, whose refresh token the server has rotated away (RFC 6749 §6, C9, C26). Nothing may put that older
stored token back in memory, serve it, or renew from its spent refresh token, in the sync or the async client.

Time is injected; what is asserted is what the server was sent and which token came back."""

from __future__ import annotations

import asyncio

import requests

import tokensmith
from fake_clock import Clock
from fault_server import FaultServer, Reply
from token_replies import token_body


class FullDisk(tokensmith.MemoryStore):
    """A store whose disk is full while ``full`` is set."""

    full = False

    def save(self, key: str, token: tokensmith.Token) -> None:
        if self.full:
            raise tokensmith.StoreError("cannot write token file: No space left on device")
        super().save(key, token)


def _stored_token(clock: Clock) -> tokensmith.Token:
    """What an earlier run stored: fresh for an hour, with refresh token rt-0."""
    return tokensmith.Token("at-0", expires_at=clock.now + 3600, issued_at=clock.now - 10, refresh_token="rt-0")


def _refresh_tokens_sent(server: FaultServer) -> list[str]:
    return [dict(r.form)["refresh_token"] for r in server.recorded("/token")]


def _script(server: FaultServer) -> None:
    server.script(
        "/token",
        Reply(json=token_body(1, 3600, rt="rt-1")),  # rt-0 is spent from here on (rotation)
        Reply(json=token_body(2, 3600, rt="rt-2")),
    )


def test_a_rejected_unsaved_token_is_renewed_from_its_own_refresh_token(fault_server: FaultServer) -> None:
    clock = Clock()
    store = FullDisk()
    client = tokensmith.TokenClient(
        fault_server.url("/token"),
        auth=tokensmith.NoClientAuth("pub"),
        grant="device_code",
        store=store,
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        session=requests.Session(),
    )
    store.save(client.cache_key, _stored_token(clock))
    _script(fault_server)
    first = client.get_token()
    assert first.access_token == "at-0"
    store.full = True
    clock.advance(1)
    second = client.get_token(stale=first)  # the resource server rejected at-0: refreshed, rotated, not stored
    assert (second.access_token, second.refresh_token) == ("at-1", "rt-1") and client.stats.save_failures == 1
    clock.advance(1)
    third = client.get_token(stale=second)  # at-1 rejected too: renewed from rt-1, not replaced by the stored at-0
    assert (third.access_token, third.refresh_token) == ("at-2", "rt-2")
    assert _refresh_tokens_sent(fault_server) == ["rt-0", "rt-1"]
    assert client.get_token() is third  # memory holds the newest, and no stored token displaces it
    store.full = False
    client.close()  # the last try saves what memory holds
    stored = store.load(client.cache_key)
    assert stored is not None and stored.refresh_token == "rt-2"
    assert fault_server.count("/token") == 2


def test_the_async_client_keeps_an_unsaved_token_ahead_of_the_store(fault_server: FaultServer) -> None:
    clock = Clock()
    store = FullDisk()
    _script(fault_server)

    async def go() -> None:
        async with tokensmith.AsyncTokenClient(
            fault_server.url("/token"),
            auth=tokensmith.NoClientAuth("pub"),
            grant="device_code",
            store=store,
            clock=clock.wall,
            monotonic=clock.monotonic,
            sleep=clock.asleep,
        ) as client:
            store.save(client.cache_key, _stored_token(clock))
            first = await client.get_token()
            assert first.access_token == "at-0"
            store.full = True
            clock.advance(1)
            second = await client.get_token(stale=first)
            assert (second.access_token, second.refresh_token) == ("at-1", "rt-1")
            clock.advance(1)
            third = await client.get_token(stale=second)
            assert (third.access_token, third.refresh_token) == ("at-2", "rt-2")
            assert await client.get_token() is third
            store.full = False
        stored = store.load(client.cache_key)
        assert stored is not None and stored.refresh_token == "rt-2"

    asyncio.run(go())
    assert _refresh_tokens_sent(fault_server) == ["rt-0", "rt-1"]
