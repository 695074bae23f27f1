"""``AsyncTokenClient``: ``TokenClient`` for asyncio programs, over ``httpx.AsyncClient`` (the ``httpx`` extra).

The same rules as ``TokenClient`` (they live in ``tokensmith._engine`` and run here as the same flows):
two deadlines per token, background renewal between them, outage-proof serving with a shared back-off, the
store and its lease for cross-process single flight, memory before store, compare-and-delete on
``invalid_grant``, the same grants (device login included; ``on_prompt``/``on_progress`` may be plain functions
or coroutine functions) and the same errors and events. What differs is how waiting is done:

- **asyncio single flight**: the first task that needs the network starts the renewal as a task of its own and
  every caller waits for it; a cancelled caller (or one under ``asyncio.timeout``) stops waiting, the renewal
  goes on for the others. A thousand waiters are woken a batch per loop iteration, never in one long step.
- **background renewal** is a task started on demand (``background_refresh=False``: none; the first caller
  past ``refresh_at`` renews itself). Close the client (``async with``, or ``await client.aclose()``) before the
  event loop ends: ``aclose()`` lets a renewal under way finish (its answer may hold a rotated refresh token),
  whereas ``asyncio.run`` cancels whatever tasks are left.
- **nothing blocks the event loop**: HTTP is httpx's; store calls (file locks, keyring) run in a worker thread
  (one per client, so a store's thread-bound lock is taken and released on the same thread), and so does building
  a request that calls your callable (a ``PrivateKeyJWT`` or ``DPoPKey.from_signer`` signer, a grant's subject
  token or assertion source: each says so with ``may_block``); the httpx client is made in a worker thread on
  first use. An in-memory key signs on the loop: microseconds, less than the thread hop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from ._async_transport import AsyncTransport
from ._engine import ClientCore, Grant, LoginFlow, LoginUI, Renewal, _copy_error
from ._flow import Cancel, Flow, arun, maybe_await
from ._http import DEFAULT_TIMEOUT, Timeout, Verify
from ._protocol.client_auth import BasicEncoding, ClientAuth
from ._protocol.discovery import ServerMetadata
from ._protocol.messages import HttpRequest, HttpResponse
from ._protocol.params import ScopeInput
from ._protocol.renewal import RenewalPolicy
from ._retry import RetryPolicy
from .device import DevicePrompt, PollProgress
from .events import RenewalEvent
from .exceptions import LoginRequired, TokensmithError
from .grants import ACCESS_TOKEN_TYPE, TokenExchangeGrant
from .stores.base import TokenStore
from .token import Token

if TYPE_CHECKING:
    from .dpop import DPoPKey

logger = logging.getLogger("tokensmith.client")

__all__ = ["AsyncTokenClient", "AsyncTransport"]

T = TypeVar("T")


class _Shared(Generic[T]):
    """A task many callers wait for (a renewal, a store read). A caller that stops waiting (cancelled, timed out)
    leaves the task running. Waking every waiter from the task's own completion would make that one step of the
    event loop as long as the crowd is large; they are woken ``BATCH`` at a time, one batch per iteration.

    A caller in another event loop (``asyncio.run`` in several threads at once, with one client) waits too: its
    loop is told thread-safely when the task is done; an asyncio future of one loop cannot be awaited in another."""

    BATCH = 16

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: Done once ``task`` is: what callers in other event loops wait on (thread-safe).
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        task.add_done_callback(self._wake)

    async def result(self) -> T:
        """The task's result (or its exception) once it is done."""
        await self.finished()
        return self.task.result()

    async def finished(self) -> None:
        """Once the task is done, in whichever event loop the caller runs."""
        if self.task.done():
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if loop is self.task.get_loop():
            self._waiters.append(waiter)
        else:
            self._finished.add_done_callback(lambda _: _wake_from_another_thread(loop, waiter))
        await waiter  # a cancellation lands here, on this caller only

    def _wake(self, _: object = None) -> None:
        if not self._finished.done():
            self._finished.set_result(None)
        for _ in range(min(self.BATCH, len(self._waiters))):
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled caller's future is done already
                waiter.set_result(None)
        if self._waiters:
            self.task.get_loop().call_soon(self._wake)


def _wake_from_another_thread(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    with contextlib.suppress(RuntimeError):  # that loop was closed meanwhile: nobody is waiting there any more
        loop.call_soon_threadsafe(wake)


class _LoopIO:
    """How the flows' effects are carried out in this driver: httpx, ``asyncio.sleep`` (or an ``asyncio.Event``'s
    wait for a login's polling), the client's store thread, and callbacks awaited when they are coroutines."""

    def __init__(self, client: AsyncTokenClient) -> None:
        self._client = client

    async def post(self, request: HttpRequest) -> HttpResponse:
        self._client._sending(request)
        return await self._client.transport.post(request)

    async def get(self, url: str) -> HttpResponse:
        return await self._client.transport.get(url)

    async def sleep(self, seconds: float, cancel: Cancel | None) -> bool:
        if isinstance(cancel, asyncio.Event):
            try:
                await asyncio.wait_for(cancel.wait(), seconds)
            except asyncio.TimeoutError:
                return False
            return True
        await self._client._sleep(seconds)
        return cancel is not None and cancel.is_set()

    async def blocking(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._client._store_thread(), call)

    async def notify(self, callback: Callable[[Any], Any], value: Any) -> None:
        await maybe_await(callback(value))


class _GetIO:
    """The IO of a discovery flow before any client exists: the transport's GET and POST only."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def post(self, request: HttpRequest) -> HttpResponse:
        return await self._transport.post(request)

    async def get(self, url: str) -> HttpResponse:
        return await self._transport.get(url)

    async def sleep(self, seconds: float, cancel: Cancel | None) -> bool:  # pragma: no cover - discovery never sleeps
        await asyncio.sleep(seconds)
        return False

    async def blocking(self, call: Callable[[], T]) -> T:  # pragma: no cover - discovery never blocks
        return call()

    async def notify(self, callback: Callable[[Any], Any], value: Any) -> None:  # pragma: no cover
        await maybe_await(callback(value))


class AsyncTokenClient(ClientCore):
    """``TokenClient``'s twin for asyncio: ``await client.get_token()``.

    The constructor takes ``TokenClient``'s arguments, except the HTTP ones: ``http_client`` (an
    ``httpx.AsyncClient`` you own and close) or ``timeout``/``verify``/``proxies`` for one this client makes and
    closes in ``aclose()``; or a ready ``transport`` (``tokensmith.aio.AsyncTransport``). ``sleep`` is an async
    function (``asyncio.sleep``). ``async with`` closes it. It may serve several event loops (``asyncio.run`` per
    call, or one per thread at once): one renewal is shared by the callers of all of them.
    """

    transport: AsyncTransport

    def __init__(
        self,
        token_endpoint: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        issuer: str | None = None,
        auth: ClientAuth | None = None,
        device_authorization_endpoint: str | None = None,
        authorization_endpoint: str | None = None,
        redirect_uri: str | None = None,
        login_flow: LoginFlow = "device",
        scope: ScopeInput = None,
        audience: str | None = None,
        resource: str | Iterable[str] | None = None,
        grant: Grant | None = None,
        store: TokenStore | None = None,
        interactive: bool = False,
        on_prompt: Callable[[DevicePrompt], Any] | None = None,
        on_progress: Callable[[PollProgress], Any] | None = None,
        login_timeout: float | None = None,
        transport: AsyncTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: Verify = None,
        proxies: Mapping[str, str] | None = None,
        basic_encoding: BasicEncoding = "rfc6749",
        retry: RetryPolicy | None = None,
        accepted_token_types: Iterable[str] = ("bearer",),
        renewal: RenewalPolicy | None = None,
        background_refresh: bool = True,
        on_event: Callable[[RenewalEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        private_key: Any = None,
        dpop: bool | DPoPKey | None = None,
    ) -> None:
        super().__init__(
            token_endpoint,
            client_id,
            client_secret,
            transport=transport or AsyncTransport(http_client, timeout=timeout, verify=verify, proxies=proxies),
            issuer=issuer,
            auth=auth,
            device_authorization_endpoint=device_authorization_endpoint,
            authorization_endpoint=authorization_endpoint,
            redirect_uri=redirect_uri,
            login_flow=login_flow,
            scope=scope,
            audience=audience,
            resource=resource,
            grant=grant,
            store=store,
            interactive=interactive,
            on_prompt=on_prompt,
            on_progress=on_progress,
            login_timeout=login_timeout,
            basic_encoding=basic_encoding,
            retry=retry,
            accepted_token_types=accepted_token_types,
            renewal=renewal,
            background_refresh=background_refresh,
            on_event=on_event,
            clock=clock,
            monotonic=monotonic,
            rng=rng,
            private_key=private_key,
            dpop=dpop,
        )
        self._sleep = sleep
        self._io = _LoopIO(self)
        self._flight: _Shared[Token] | None = None
        self._flight_is_login = False
        self._loading: _Shared[Token | None] | None = None
        self._resaving: asyncio.Future[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def _store_thread(self) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._mutex:  # one thread, whichever event loops (threads) ask at once
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokensmith-store")
                executor = self._executor
        return executor

    async def _run(self, flow: Flow[T]) -> T:
        return await arun(flow, self._io)

    def _callback_from_thread(self, callback: Callable[[Any], Any]) -> Callable[[Any], None]:
        """On the event loop, like every other callback of this client, and awaited when it is a coroutine (an
        async ``on_prompt`` for a browser login, whose listener waits in a worker thread). The thread waits until
        it has run: the link is shown before the browser is opened."""
        loop = asyncio.get_running_loop()  # called by the flow, on the loop

        def call(value: Any) -> None:
            async def run() -> None:
                await maybe_await(callback(value))

            asyncio.run_coroutine_threadsafe(run(), loop).result()

        return call

    @classmethod
    async def for_resource(
        cls,
        url: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        www_authenticate: str | None = None,
        choose_authorization_server: Callable[[Sequence[str]], str] | None = None,
        **kwargs: Any,
    ) -> AsyncTokenClient:
        """As ``TokenClient.for_resource`` (RFC 9728 → RFC 8414/OIDC → RFC 8707), over this client's transport."""
        from .resource import resource_plan_flow

        transport = kwargs.pop("transport", None) or AsyncTransport(
            kwargs.pop("http_client", None),
            timeout=kwargs.pop("timeout", DEFAULT_TIMEOUT),
            verify=kwargs.pop("verify", None),
            proxies=kwargs.pop("proxies", None),
        )
        flow = resource_plan_flow(
            url, transport, www_authenticate=www_authenticate, choose_authorization_server=choose_authorization_server
        )
        plan = await arun(flow, _GetIO(transport))
        return cls._for_plan(plan, url, client_id, client_secret, transport, kwargs)

    async def discover(self, *, refresh: bool = False) -> ServerMetadata | None:
        """Fetch (or take from the process-wide cache) the issuer's metadata; None without an issuer."""
        self._ensure_open()
        return await self._run(self._discover_flow(refresh=refresh))

    # -- the one call -----------------------------------------------------------------------------------------

    async def get_token(
        self, *, stale: Token | None = None, interactive: bool | None = None, min_valid: float = 0.0
    ) -> Token:
        """A usable token, as ``TokenClient.get_token``: with a fresh one in memory, returned without leaving
        the event loop; in its refresh-soon window, returned at once while a background task renews it."""
        token = self._answer_now(stale, min_valid)
        if token is None:
            self._ensure_open()  # closed: the token in memory still serves, but no store thread or HTTP client
        if token is None and self._flight is None:  # nobody renewing: another process may have stored a token
            token = self._adopt(await self._load_shared(), stale, min_valid)
        if token is not None:
            return token
        return await self._renew(Renewal(stale, self.interactive if interactive is None else interactive, min_valid))

    async def refresh(self) -> Token:
        """Renew now with the refresh token (RFC 6749 §6), through the same single flight and store."""
        self._ensure_open()
        return await self._renew(Renewal(force="refresh"))

    async def fetch_client_credentials(self) -> Token:
        """A new token by the client-credentials grant now (RFC 6749 §4.4); the result is stored."""
        self._ensure_open()
        return await self._renew(Renewal(force="client_credentials"))

    async def exchange_token(
        self,
        subject_token: str,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        *,
        actor_token: str | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        scope: ScopeInput = None,
    ) -> Token:
        """One RFC 8693 token exchange now, as ``TokenClient.exchange_token`` (not cached or stored)."""
        self._ensure_open()
        return await self._run(
            self._exchange_flow(
                TokenExchangeGrant(
                    subject_token,
                    subject_token_type,
                    actor_token=actor_token,
                    actor_token_type=actor_token_type,
                    requested_token_type=requested_token_type,
                    audience=audience,
                    resource=resource,
                    scope=scope,
                )
            )
        )

    async def login(
        self,
        *,
        on_prompt: Callable[[DevicePrompt], Any] | None = None,
        on_progress: Callable[[PollProgress], Any] | None = None,
        cancel: asyncio.Event | None = None,
        login_timeout: float | None = None,
        flow: LoginFlow | None = None,
        paste: Callable[[], str] | None = None,
    ) -> Token:
        """An interactive login now (``flow``: device, browser or auto, as ``TokenClient.login``), stored like any
        renewal. For the device flow ``on_prompt`` and ``on_progress`` may be coroutine functions; the browser flow
        waits in a worker thread and calls a plain ``on_prompt`` from there. Set ``cancel`` to stop polling
        (cancelling the awaiting task
        does not: the login is shared with every caller waiting for a token)."""
        self._ensure_open()
        ui = LoginUI(on_prompt or self.on_prompt, on_progress or self.on_progress, cancel, login_timeout, flow, paste)
        return await self._renew(Renewal(interactive=True, force="login", ui=ui))

    # -- renewal: asyncio single flight ------------------------------------------------------------------------

    async def _renew(self, r: Renewal) -> Token:
        for _ in range(3):  # a follower whose leader's result does not suit it (stale) leads next time
            flight = self._flight
            leader = flight is None
            shared_login = not leader and r.force == "login" and self._flight_is_login
            if flight is None:
                landed = self._renewed_meanwhile(r)
                if landed is not None:
                    return landed
                with self._mutex:
                    verdict = self._remembered(r.stale, r.force)
                    if verdict is None:
                        # Checked and launched under the mutex: a caller in another event loop (thread) may have
                        # launched one since the look above; then this caller waits for that one.
                        flight = self._flight
                        leader = flight is None
                        shared_login = not leader and r.force == "login" and self._flight_is_login
                        if flight is None:
                            flight = self._launch(r)
                if verdict is not None:
                    return self._throttled(verdict)
                assert flight is not None
            elif r.force is None and self._still_valid(self._token, r.stale):
                return self._token  # someone is renewing; this token still works meanwhile
            result = await self._outcome(flight)
            if result is None:  # that renewal was cancelled with its event loop: this caller renews
                with self._mutex:
                    if self._flight is flight:
                        self._flight = None
                continue
            if leader or shared_login or (r.force is None and self._fresh_outcome(result, r.stale)):
                return result  # (a login() during another login: the person logged in once, for both)
        raise LoginRequired("could not obtain a token that is not the rejected one")

    def _launch(self, r: Renewal) -> _Shared[Token]:
        task = asyncio.get_running_loop().create_task(self._run(self._renew_flow(r)), name="tokensmith-renewal")
        task.add_done_callback(self._landed)  # first: a waiter woken by the flight finds it gone
        flight = _Shared(task)
        self._flight, self._flight_is_login = flight, r.force == "login"
        return flight

    def _landed(self, task: asyncio.Task[Token]) -> None:
        if self._flight is not None and self._flight.task is task:
            self._flight = None
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter gets its own copy, a background failure was logged

    async def _outcome(self, flight: _Shared[Token]) -> Token | None:
        """The renewal's token, or None when it was cancelled but this caller was not (the event loop it ran in
        ended, ``asyncio.run`` in another thread): then the caller renews itself."""
        try:
            return await flight.result()
        except asyncio.CancelledError:
            if flight.task.cancelled() and not _cancelling():
                if self._closed:
                    raise TokensmithError("the client was closed while renewing the token") from None
                return None
            raise  # this caller was cancelled; the renewal goes on for the others
        except BaseException as error:
            raise _copy_error(error) from error

    def _start_background(self) -> None:
        if self._flight is not None:
            return
        with self._mutex:  # checked and launched together: callers in other event loops (threads) may race
            if self._flight is None and self._background_due():
                # Its own task: neither a caller's cancellation nor its asyncio.timeout() reaches the renewal.
                self._launch(Renewal(background=True))

    async def _load_shared(self) -> Token | None:
        """The stored token, read off the loop; concurrent callers share one read."""
        loading = self._loading
        if loading is None:
            loading = self._loading = _Shared(asyncio.ensure_future(self._io.blocking(self._load)))
            loading.task.add_done_callback(lambda _: self._loaded(loading))
        return await loading.result()

    def _loaded(self, loading: _Shared[Token | None]) -> None:
        if self._loading is loading:
            self._loading = None
        _retrieve(loading.task, "reading the stored token")  # its waiters may all have been cancelled

    def _resave_soon(self) -> None:
        """Save the token that could not be stored, off the loop, at most every ``RESAVE_INTERVAL``."""
        if self._resaving is None and not self._monotonic() < self._next_save_attempt:
            resaving = self._resaving = asyncio.ensure_future(self._io.blocking(self._retry_save))
            resaving.add_done_callback(self._resaved)

    def _resaved(self, resaving: asyncio.Future[None]) -> None:
        self._resaving = None
        _retrieve(resaving, "saving the renewed token again")  # nobody waits for it

    async def aclose(self) -> None:
        """Let a renewal in progress finish (a login is cancelled instead), save a token that could not be
        stored (one last try), close the HTTP client if this client made it, and stop the store thread.
        Afterwards the token in memory is still handed out while usable; anything more raises ``ClientClosed``."""
        self._closed = True
        flight = self._flight
        if flight is not None:
            if self._flight_is_login:
                _cancel(flight.task)
            await flight.finished()
        if self._unsaved is not None:
            self._next_save_attempt = 0.0
            await self._io.blocking(self._retry_save)
        await self.transport.aclose()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def __aenter__(self) -> AsyncTokenClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _retrieve(task: asyncio.Future[Any], what: str) -> None:
    """Mark a failure of a task nobody may be left to await as seen (no "Task exception was never retrieved" at
    garbage collection): a store that raises something other than ``StoreError``. A caller still waiting gets it
    as it is; without one it is logged here, by type only (a store's message may quote what it holds)."""
    error = None if task.cancelled() else task.exception()
    if error is not None:
        logger.debug("%s failed: %s", what, type(error).__name__)


def _cancel(task: asyncio.Task[Any]) -> None:
    """``task.cancel()``, from its own event loop or thread-safely from another's."""
    loop = task.get_loop()
    if loop is asyncio.get_running_loop():
        task.cancel()
    else:
        with contextlib.suppress(RuntimeError):  # that loop was closed: nothing runs there any more
            loop.call_soon_threadsafe(task.cancel)


def _cancelling() -> bool:
    """Whether the current task has been asked to cancel (Python 3.11+; on 3.10, assume it has)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return True if cancelling is None else bool(cancelling())


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
AsyncTokenClient.__module__ = "tokensmith"
AsyncTransport.__module__ = "tokensmith"
