"""``AsyncTokenClient`` calls a user's callable that may block (a KMS or HSM signer for ``PrivateKeyJWT`` or
``DPoPKey.from_signer``, a grant's credential source) off the event loop, against the fault server.

Each callable here sleeps 200 ms, as a KMS round trip would, and notes the thread it ran on and how many times a
concurrent task ticked (``asyncio.sleep(0.01)`` in a loop) while it ran: on the event loop's thread the ticker
cannot move at all, so the assertions are counts (ticks > 0, the thread's name), never durations. An in-memory
key signs on the loop, with no thread hop (it takes microseconds); the sync client calls everything inline."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import tokensmith
from fake_clock import Clock
from fault_server import FaultServer, Reply
from loop_stalls import Slow, Ticker, run_ticking
from token_replies import DOWN, token_body
from tokensmith import (
    AsyncTokenClient,
    ClientSecretBasic,
    DPoPKey,
    JWTBearerGrant,
    PrivateKeyJWT,
    RetryPolicy,
    TokenExchangeGrant,
)
from tokensmith._protocol.token import token_request
from tokensmith.dpop import DPoPSession
from tokensmith.grants import ACCESS_TOKEN_TYPE
from tokensmith.integrations import httpx_auth
from tokensmith.integrations.httpx_auth import TokenAuth

T = TypeVar("T")

DPOP_TOKEN = {"access_token": "at-dpop", "token_type": "DPoP", "expires_in": 600}
DEVICE = {"device_code": "dc", "user_code": "UC", "verification_uri": "https://v", "expires_in": 600, "interval": 5}
PENDING = Reply(status=400, json={"error": "authorization_pending"})


def _ec_signer() -> Callable[[bytes], bytes]:
    """What a KMS returns for ES256: a DER signature by a key that never leaves it."""
    key = ec.generate_private_key(ec.SECP256R1())
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def _dpop_signer() -> tuple[Callable[[bytes], bytes], dict[str, Any]]:
    """An HSM's DPoP signer (raw ``R || S``, as ``DPoPKey.from_signer`` wants) and its public JWK."""
    real = DPoPKey.generate()
    return real._sign, real.public_jwk


def _client(server: FaultServer, clock: Clock, **kwargs: Any) -> AsyncTokenClient:
    kwargs.setdefault("auth", ClientSecretBasic("svc", "svc-secret"))
    return AsyncTokenClient(
        server.url("/token"),
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.asleep,
        rng=lambda: 0.0,
        background_refresh=False,
        **kwargs,
    )


def _form(server: FaultServer, name: str, path: str = "/token") -> list[str]:
    return [dict(r.form)[name] for r in server.recorded(path)]


# --- client authentication with a KMS signer --------------------------------------------------------------------


def test_client_credentials_sign_the_assertion_off_the_loop(fault_server: FaultServer) -> None:
    ticker = Ticker()
    kms = Slow(ticker, _ec_signer())
    fault_server.script("/token", Reply(json=token_body(1)))

    async def work() -> str:
        async with _client(fault_server, Clock(), auth=PrivateKeyJWT("svc", kms, alg="ES256", kid="k1")) as client:
            return (await client.get_token()).access_token

    assert run_ticking(ticker, work) == "at-1"
    kms.assert_off_loop(ticker, calls=1)
    assert len(_form(fault_server, "client_assertion")) == 1


def test_a_retry_signs_its_fresh_assertion_off_the_loop(fault_server: FaultServer) -> None:
    ticker = Ticker()
    kms = Slow(ticker, _ec_signer())
    fault_server.script("/token", DOWN, Reply(json=token_body(1)))

    async def work() -> str:
        async with _client(
            fault_server,
            Clock(),
            auth=PrivateKeyJWT("svc", kms, alg="ES256"),
            retry=RetryPolicy(attempts=2, backoff=0.01),
        ) as client:
            return (await client.get_token()).access_token

    assert run_ticking(ticker, work) == "at-1"
    kms.assert_off_loop(ticker, calls=2)
    assertions = _form(fault_server, "client_assertion")
    assert len(assertions) == 2 and assertions[0] != assertions[1]  # a new jti for the retry (RFC 7523 §3)


def test_a_refresh_signs_its_assertion_off_the_loop(fault_server: FaultServer) -> None:
    ticker = Ticker()
    kms = Slow(ticker, _ec_signer())
    fault_server.script("/token", Reply(json=token_body(1, rt="rt-1")), Reply(json=token_body(2, rt="rt-2")))

    async def work() -> str:
        async with _client(fault_server, Clock(), auth=PrivateKeyJWT("svc", kms, alg="ES256")) as client:
            await client.get_token()
            return (await client.refresh()).access_token

    assert run_ticking(ticker, work) == "at-2"
    kms.assert_off_loop(ticker, calls=2)
    assert _form(fault_server, "grant_type") == ["client_credentials", "refresh_token"]


def test_device_login_signs_every_poll_off_the_loop(fault_server: FaultServer) -> None:
    """A confidential device client with a KMS signer: the device authorization request and each poll carry a new
    assertion (RFC 8628 §3.4, RFC 7523 §3), each signed off the loop."""
    ticker = Ticker()
    kms = Slow(ticker, _ec_signer())
    fault_server.script("/device", Reply(json=DEVICE))
    fault_server.script("/token", PENDING, PENDING, Reply(json=token_body(1, rt="rt-1")))
    prompts: list[str] = []

    async def work() -> str:
        async with _client(
            fault_server,
            Clock(),
            auth=PrivateKeyJWT("svc", kms, alg="ES256"),
            device_authorization_endpoint=fault_server.url("/device"),
            grant="device_code",
            on_prompt=lambda prompt: prompts.append(prompt.user_code),
        ) as client:
            return (await client.login()).access_token

    assert run_ticking(ticker, work) == "at-1"
    assert prompts == ["UC"]
    kms.assert_off_loop(ticker, calls=4)  # the device authorization request and three polls
    polls = _form(fault_server, "client_assertion")
    assert len(polls) == 3 and len(set(polls)) == 3
    assert len(_form(fault_server, "client_assertion", "/device")) == 1


# --- grants with a callable credential source ---------------------------------------------------------------------


def test_token_exchange_asks_a_callable_subject_token_off_the_loop(fault_server: FaultServer) -> None:
    ticker = Ticker()
    made: list[str] = []

    def subject_token() -> str:  # a rotating workload-identity file, say
        made.append(f"subject-{len(made) + 1}")
        return made[-1]

    source = Slow(ticker, subject_token)
    fault_server.script("/token", DOWN, Reply(json={**token_body(1), "issued_token_type": ACCESS_TOKEN_TYPE}))

    async def work() -> str:
        async with _client(
            fault_server, Clock(), grant=TokenExchangeGrant(source), retry=RetryPolicy(attempts=2, backoff=0.01)
        ) as client:
            return (await client.get_token()).access_token

    assert run_ticking(ticker, work) == "at-1"
    source.assert_off_loop(ticker, calls=2)  # asked again for the retry
    assert _form(fault_server, "subject_token") == made == ["subject-1", "subject-2"]


def test_jwt_bearer_asks_a_callable_assertion_off_the_loop(fault_server: FaultServer) -> None:
    ticker = Ticker()
    source = Slow(ticker, lambda: "header.claims.signature")
    fault_server.script("/token", Reply(json=token_body(1)))

    async def work() -> str:
        async with _client(fault_server, Clock(), grant=JWTBearerGrant(source)) as client:
            return (await client.get_token()).access_token

    assert run_ticking(ticker, work) == "at-1"
    source.assert_off_loop(ticker, calls=1)
    assert _form(fault_server, "assertion") == ["header.claims.signature"]


def test_jwt_bearer_signed_by_a_kms_signs_off_the_loop(fault_server: FaultServer) -> None:
    ticker = Ticker()
    kms = Slow(ticker, _ec_signer())
    fault_server.script("/token", Reply(json=token_body(1)))
    grant = JWTBearerGrant.signed(kms, issuer="svc", subject="user", audience="https://as", alg="ES256")

    async def work() -> str:
        async with _client(fault_server, Clock(), grant=grant) as client:
            return (await client.get_token()).access_token

    assert run_ticking(ticker, work) == "at-1"
    kms.assert_off_loop(ticker, calls=1)


# --- DPoP with a key behind a signer ------------------------------------------------------------------------------


def test_dpop_proofs_for_the_token_endpoint_are_signed_off_the_loop(fault_server: FaultServer) -> None:
    """The token request's proof and the one of its nonce retry (RFC 9449 §8)."""
    ticker = Ticker()
    sign, public_jwk = _dpop_signer()
    hsm = Slow(ticker, sign)
    nonce = Reply(status=400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n-1"})
    fault_server.script("/token", nonce, Reply(json=DPOP_TOKEN))

    async def work() -> tokensmith.Token:
        async with _client(fault_server, Clock(), dpop=DPoPKey.from_signer(hsm, public_jwk, "ES256")) as client:
            return await client.get_token()

    token = run_ticking(ticker, work)
    assert token.is_dpop
    hsm.assert_off_loop(ticker, calls=2)
    assert ["dpop" in r.headers for r in fault_server.recorded("/token")] == [True, True]


def test_httpx_tokenauth_signs_the_resource_proof_off_the_loop(fault_server: FaultServer) -> None:
    """``httpx.AsyncClient(auth=TokenAuth(async_client))`` to a resource with a ``from_signer`` key: the token
    request's proof on the client's store thread, the resource request's in a worker thread."""
    ticker = Ticker()
    sign, public_jwk = _dpop_signer()
    hsm = Slow(ticker, sign)
    fault_server.script("/token", Reply(json=DPOP_TOKEN))
    fault_server.default("/api", Reply(json={"ok": True}))

    async def work() -> int:
        async with _client(fault_server, Clock(), dpop=DPoPKey.from_signer(hsm, public_jwk, "ES256")) as client:
            assert client.dpop_proofs_may_block
            async with httpx.AsyncClient(auth=TokenAuth(client)) as http:
                return (await http.get(fault_server.url("/api"))).status_code

    assert run_ticking(ticker, work) == 200
    hsm.assert_off_loop(ticker, calls=2, thread_prefix=None)
    assert hsm.threads[0].name.startswith("tokensmith-store")
    sent = fault_server.recorded("/api")[0].headers
    assert sent["authorization"] == "DPoP at-dpop" and "dpop" in sent


# --- no thread hop without a user's callable; the sync client unchanged -------------------------------------------


def test_in_memory_keys_sign_on_the_loop_without_a_thread_hop(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ES256 in memory takes microseconds, less than a thread hop: the assertion (its clock is read as it is made),
    the DPoP proofs and the resource request's proof are made on the loop, and nothing builds a request on the
    store thread."""
    assertion_threads: list[threading.Thread] = []

    def clock() -> float:
        assertion_threads.append(threading.current_thread())
        return time.time()

    in_thread: list[object] = []
    original_in_thread = httpx_auth._in_thread

    async def noting_in_thread(call: Callable[[], T]) -> T:
        in_thread.append(call)
        return await original_in_thread(call)

    monkeypatch.setattr(httpx_auth, "_in_thread", noting_in_thread)
    nonce = Reply(status=400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n-1"})
    fault_server.script("/token", DOWN, nonce, Reply(json=DPOP_TOKEN))
    fault_server.default("/api", Reply(json={"ok": True}))
    offloaded: list[object] = []
    loop_thread: list[threading.Thread] = []

    async def work() -> int:
        loop_thread.append(threading.current_thread())
        auth = PrivateKeyJWT("svc", ec.generate_private_key(ec.SECP256R1()), clock=clock)
        async with _client(
            fault_server, Clock(), auth=auth, dpop=DPoPKey.generate(), retry=RetryPolicy(attempts=2, backoff=0.01)
        ) as client:
            assert not client.dpop_proofs_may_block
            blocking = client._io.blocking

            async def noting(call: Callable[[], T]) -> T:
                offloaded.append(getattr(call, "func", call))
                return await blocking(call)

            client._io.blocking = noting  # type: ignore[method-assign]
            async with httpx.AsyncClient(auth=TokenAuth(client)) as http:
                return (await http.get(fault_server.url("/api"))).status_code

    assert asyncio.run(work()) == 200
    assert len(assertion_threads) == 3 and set(assertion_threads) == set(loop_thread)  # the 503 retry, the nonce retry
    builders = {token_request, DPoPSession.signed, tokensmith.AsyncTokenClient._extension_request}
    assert offloaded and not builders & {getattr(f, "__func__", f) for f in offloaded}, offloaded  # store calls only
    assert in_thread == []


def test_the_sync_client_calls_the_signer_and_the_source_in_the_callers_thread(fault_server: FaultServer) -> None:
    threads: list[threading.Thread] = []

    def noting(call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def wrapper(*args: Any) -> Any:
            threads.append(threading.current_thread())
            return call(*args)

        return wrapper

    sign, public_jwk = _dpop_signer()
    fault_server.script("/token", DOWN, Reply(json=DPOP_TOKEN))
    client = tokensmith.TokenClient(
        fault_server.url("/token"),
        auth=PrivateKeyJWT("svc", noting(_ec_signer()), alg="ES256"),
        grant=TokenExchangeGrant(noting(lambda: "subject")),
        dpop=DPoPKey.from_signer(noting(sign), public_jwk, "ES256"),
        session=requests.Session(),
        retry=RetryPolicy(attempts=2, backoff=0.01),
        sleep=lambda _: None,
        background_refresh=False,
    )
    assert client.get_token().is_dpop
    assert len(threads) == 6 and set(threads) == {threading.current_thread()}  # 2 x (subject, assertion, proof)
