"""The browser login's driver against the fault server's token endpoint, the test playing the browser (issue 9):
the loopback listener's one-shot rules (wrong or missing state, a second request, other paths, methods and hosts),
RFC 9207 iss, error redirects, timeout, cancel, a taken port, a fixed or IPv6 redirect URI, paste mode, the code
exchange (exactly one token request, the verifier matching the challenge) and no secret in any log, page or error."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import socket
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import tokensmith
from browser_run import BackgroundLogin, free_port, get, in_background, ipv6_loopback_available, refused
from fault_server import FaultServer, Reply
from tokensmith.browser import browser_login

ACCESS = "at-0123456789abcdef"
REFRESH = "rt-0123456789abcdef"
CODE = "the-authorization-code-42"
TOKEN = Reply(json={"access_token": ACCESS, "token_type": "Bearer", "expires_in": 3600, "refresh_token": REFRESH})


def start(fault_server: FaultServer, **kwargs: object) -> BackgroundLogin:
    fault_server.default("/token", TOKEN)
    options: dict[str, object] = {
        "authorization_endpoint": fault_server.url("/authorize"),
        "token_endpoint": fault_server.url("/token"),
        "auth": tokensmith.NoClientAuth("cli"),
        "scope": "openid offline_access",
    }
    options.update(kwargs)
    return BackgroundLogin(**options)


def test_a_redirect_is_exchanged_with_one_token_request_and_a_page_without_secrets(fault_server: FaultServer) -> None:
    login = start(fault_server, scope=["offline", "all"])
    prompt = login.prompt()
    assert prompt.redirect_uri.startswith("http://127.0.0.1:") and prompt.redirect_uri.endswith("/callback")
    assert not prompt.browser and not prompt.paste and prompt.expires_in == 30
    assert login.state not in repr(prompt)

    page = get(login.redirect(code=CODE, state=login.state))
    token = login.result()

    assert (token.access_token, token.refresh_token) == (ACCESS, REFRESH)
    assert page.status_code == 200 and "Signed in" in page.text
    for secret in (CODE, login.state, ACCESS, REFRESH):
        assert secret not in page.text
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    (sent,) = fault_server.recorded("/token")  # exactly one token request, no polling
    form = dict(sent.form)
    assert len(sent.form) == len(form)  # nothing repeated
    assert form["grant_type"] == "authorization_code" and form["code"] == CODE
    assert form["redirect_uri"] == prompt.redirect_uri and form["client_id"] == "cli"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=")
    assert challenge.decode() == login.param("code_challenge")
    assert login.param("code_challenge_method") == "S256"
    assert refused(prompt.redirect_uri)  # the listener shut down


@pytest.mark.parametrize("bad", [{}, {"state": ""}, {"state": "not-this-logins-state"}])
def test_a_wrong_or_missing_state_is_refused_and_the_wait_goes_on(
    fault_server: FaultServer, bad: dict[str, str]
) -> None:
    login = start(fault_server)
    page = get(login.redirect(code="forged-code", **bad))
    assert page.status_code == 400 and "does not belong" in page.text
    assert "forged-code" not in page.text
    assert not login.done.wait(0.2)  # still waiting
    get(login.redirect(code=CODE, state=login.state))
    assert login.result().access_token == ACCESS
    assert [dict(r.form)["code"] for r in fault_server.recorded("/token")] == [CODE]


def test_a_forged_error_redirect_does_not_end_the_login(fault_server: FaultServer) -> None:
    login = start(fault_server)
    assert get(login.redirect(error="access_denied", state="forged")).status_code == 400
    assert not login.done.wait(0.2)
    get(login.redirect(code=CODE, state=login.state))
    assert login.result().access_token == ACCESS


def test_a_second_request_is_refused_while_the_first_is_exchanged(fault_server: FaultServer) -> None:
    login = start(fault_server)
    exchanging = threading.Event()  # the code exchange stays in flight until the second request was answered
    fault_server.script("/token", Reply(json=TOKEN.json, hold=exchanging))
    first, box = in_background(lambda: get(login.redirect(code=CODE, state=login.state)))
    assert fault_server.wait_for(1, "/token")
    second = get(login.redirect(code=CODE, state=login.state))
    exchanging.set()
    assert second.status_code == 400 and "already received its answer" in second.text
    first.join(30)
    assert box["value"].status_code == 200 and "Signed in" in box["value"].text
    assert login.result().access_token == ACCESS
    assert fault_server.count("/token") == 1
    assert refused(login.prompt().redirect_uri)


def test_other_paths_methods_and_hosts_are_turned_away_without_ending_the_wait(fault_server: FaultServer) -> None:
    login = start(fault_server)
    base = login.prompt().redirect_uri
    origin = base.rsplit("/", 1)[0]
    assert get(f"{origin}/favicon.ico").status_code == 404
    assert get(f"{origin}/other?code={CODE}&state={login.state}").status_code == 404
    with requests.Session() as session:
        session.trust_env = False
        assert session.post(login.redirect(code=CODE, state=login.state), timeout=10).status_code == 405
        assert session.head(login.redirect(code=CODE, state=login.state), timeout=10).status_code == 405
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host header.
    assert get(login.redirect(code=CODE, state=login.state), headers={"Host": "evil.example"}).status_code == 421
    assert not login.done.wait(0.2)
    assert fault_server.count("/token") == 0
    get(login.redirect(code=CODE, state=login.state))
    assert login.result().access_token == ACCESS


def test_an_error_redirect_raises_its_typed_error_and_shows_it(fault_server: FaultServer) -> None:
    login = start(fault_server)
    page = get(login.redirect(error="access_denied", error_description="The user said no", state=login.state))
    error = login.failure()
    assert type(error) is tokensmith.AccessDenied
    assert error.error_description == "The user said no"
    assert page.status_code == 400 and "access_denied" in page.text and "The user said no" in page.text
    assert fault_server.count("/token") == 0


def test_error_descriptions_are_escaped_in_the_page(fault_server: FaultServer) -> None:
    login = start(fault_server)
    page = get(login.redirect(error="invalid_scope", error_description="<script>x()</script>", state=login.state))
    assert isinstance(login.failure(), tokensmith.InvalidScope)
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


@pytest.mark.parametrize("iss", [None, "http://evil.example"])
def test_rfc9207_iss_mismatch_or_absence_ends_the_login_without_a_token_request(
    fault_server: FaultServer, iss: str | None
) -> None:
    issuer = fault_server.base_url
    login = start(fault_server, issuer=issuer, iss_required=True)
    params = {"code": CODE, "state": login.state} | ({"iss": iss} if iss else {})
    page = get(login.redirect(**params))
    assert isinstance(login.failure(), tokensmith.IssuerMismatch)
    assert page.status_code == 400 and "unexpected authorization server" in page.text
    assert fault_server.count("/token") == 0


def test_a_matching_iss_is_accepted(fault_server: FaultServer) -> None:
    login = start(fault_server, issuer=fault_server.base_url, iss_required=True)
    get(login.redirect(code=CODE, state=login.state, iss=fault_server.base_url))
    assert login.result().access_token == ACCESS


def test_timeout_closes_the_listener(fault_server: FaultServer) -> None:
    login = start(fault_server, login_timeout=0.3)
    redirect_uri = login.prompt().redirect_uri
    assert isinstance(login.failure(), tokensmith.BrowserLoginTimeout)
    assert refused(redirect_uri)
    assert fault_server.count("/token") == 0


def test_cancel_closes_the_listener(fault_server: FaultServer) -> None:
    login = start(fault_server)
    redirect_uri = login.prompt().redirect_uri
    get(login.redirect(code=CODE, state="wrong"))  # a refused request does not count as an answer
    login.cancel.set()
    assert isinstance(login.failure(), tokensmith.BrowserLoginCancelled)
    assert refused(redirect_uri)
    assert fault_server.count("/token") == 0


def test_a_taken_fixed_port_is_a_typed_error_before_anything_is_shown_or_sent(fault_server: FaultServer) -> None:
    prompts: list[object] = []
    opened: list[str] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(tokensmith.RedirectPortInUse) as caught:
            browser_login(
                fault_server.url("/authorize"),
                fault_server.url("/token"),
                tokensmith.NoClientAuth("cli"),
                on_prompt=prompts.append,
                open_browser=opened.append,
                redirect_uri=f"http://127.0.0.1:{port}/callback",
            )
    assert caught.value.port == port and str(port) in str(caught.value)
    assert not isinstance(caught.value, tokensmith.AuthenticationError)  # not the server's verdict
    assert prompts == [] and opened == [] and fault_server.count() == 0


def test_a_fixed_redirect_uri_is_bound_and_sent_exactly(fault_server: FaultServer) -> None:
    port = free_port()
    fixed = f"http://127.0.0.1:{port}/oauth2/cb"
    login = start(fault_server, redirect_uri=fixed)
    assert login.prompt().redirect_uri == fixed and login.param("redirect_uri") == fixed
    get(f"{fixed}?code={CODE}&state={login.state}")
    login.result()
    assert dict(fault_server.recorded("/token")[0].form)["redirect_uri"] == fixed


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_redirect(fault_server: FaultServer) -> None:
    login = start(fault_server, redirect_uri="http://[::1]/callback")
    redirect_uri = login.prompt().redirect_uri
    assert redirect_uri.startswith("http://[::1]:") and redirect_uri.endswith("/callback")
    get(login.redirect(code=CODE, state=login.state))
    assert login.result().access_token == ACCESS


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_localhost_listens_on_both_loopbacks(fault_server: FaultServer) -> None:
    port = free_port()
    login = start(fault_server, redirect_uri=f"http://localhost:{port}/callback")
    assert login.prompt().redirect_uri == f"http://localhost:{port}/callback"
    assert get(f"http://[::1]:{port}/callback?code=x&state=wrong").status_code == 400
    get(f"http://127.0.0.1:{port}/callback?code={CODE}&state={login.state}")
    assert login.result().access_token == ACCESS


def test_token_endpoint_rejection_is_raised_and_shown_after_one_request(fault_server: FaultServer) -> None:
    login = start(fault_server)
    fault_server.script("/token", Reply(status=400, json={"error": "invalid_grant", "error_description": "used"}))
    page = get(login.redirect(code=CODE, state=login.state))
    assert isinstance(login.failure(), tokensmith.InvalidGrant)
    assert page.status_code == 400 and "invalid_grant" in page.text
    assert fault_server.count("/token") == 1


def test_a_code_is_not_sent_twice_after_a_failure_the_server_may_have_acted_on(fault_server: FaultServer) -> None:
    login = start(fault_server)
    fault_server.script("/token", Reply(status=502, body="<html>bad gateway</html>", content_type="text/html"))
    get(login.redirect(code=CODE, state=login.state))
    assert isinstance(login.failure(), tokensmith.InvalidResponse)
    assert fault_server.count("/token") == 1


def test_an_id_token_with_another_nonce_is_refused(fault_server: FaultServer) -> None:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    login = start(fault_server)
    id_token = f"{part({'alg': 'ES256'})}.{part({'nonce': 'someone-else'})}.c2ln"
    fault_server.script("/token", Reply(json={**TOKEN.json, "id_token": id_token}))  # type: ignore[dict-item]
    get(login.redirect(code=CODE, state=login.state))
    error = login.failure()
    assert isinstance(error, tokensmith.InvalidResponse) and "nonce" in str(error)
    assert login.param("nonce") and fault_server.count("/token") == 1


def test_a_plain_http_authorization_endpoint_is_refused_before_listening(fault_server: FaultServer) -> None:
    prompts: list[object] = []
    with pytest.raises(tokensmith.InsecureEndpointError):
        browser_login(
            "http://idp.example/authorize",
            fault_server.url("/token"),
            tokensmith.NoClientAuth("cli"),
            on_prompt=prompts.append,
            open_browser=None,
        )
    assert prompts == []


def test_the_browser_is_opened_with_the_prompted_link(fault_server: FaultServer) -> None:
    opened: list[str] = []
    seen = threading.Event()

    def opener(url: str) -> bool:
        opened.append(url)
        seen.set()
        return True

    login = start(fault_server, open_browser=opener)
    prompt = login.prompt()
    assert prompt.browser is True
    assert seen.wait(10) and opened == [prompt.url]
    get(login.redirect(code=CODE, state=login.state))
    login.result()


def test_a_failing_opener_does_not_end_the_login(fault_server: FaultServer) -> None:
    def opener(url: str) -> bool:
        raise OSError("no browser")

    login = start(fault_server, open_browser=opener)
    get(login.redirect(code=CODE, state=login.state))
    assert login.result().access_token == ACCESS


# --- paste mode ---------------------------------------------------------------------------------------------------


class Paster:
    """A ``paste`` callable answering from the login's own prompt, once the test has the login object."""

    def __init__(self, answer: Callable[[BackgroundLogin], str], blanks: int = 0) -> None:
        self.answer = answer
        self.blanks = blanks
        self.calls = 0
        self.login: BackgroundLogin | None = None
        self.ready = threading.Event()

    def start(self, fault_server: FaultServer) -> BackgroundLogin:
        self.login = start(fault_server, paste=self)
        self.ready.set()
        return self.login

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.blanks:
            return " " * self.calls
        assert self.ready.wait(10) and self.login is not None
        return self.answer(self.login)


def test_paste_mode_takes_the_pasted_address_and_ignores_blank_lines(fault_server: FaultServer) -> None:
    paster = Paster(lambda login: "  " + login.redirect(code=CODE, state=login.state) + "\n", blanks=2)
    login = paster.start(fault_server)
    prompt = login.prompt()
    assert prompt.paste is True and prompt.browser is False
    assert login.result().access_token == ACCESS
    assert paster.calls == 3  # two blank lines were asked again
    assert refused(prompt.redirect_uri)  # nothing ever listened
    assert dict(fault_server.recorded("/token")[0].form)["redirect_uri"] == prompt.redirect_uri


def test_paste_mode_accepts_the_query_alone(fault_server: FaultServer) -> None:
    paster = Paster(lambda login: "?" + login.redirect(code=CODE, state=login.state).split("?", 1)[1])
    assert paster.start(fault_server).result().access_token == ACCESS


def test_paste_mode_with_a_wrong_state_ends_the_login(fault_server: FaultServer) -> None:
    login = Paster(lambda login: login.redirect(code=CODE, state="old-login-xyz")).start(fault_server)
    error = login.failure()
    assert isinstance(error, tokensmith.StateMismatch)
    assert "old-login-xyz" not in str(error) and login.state not in str(error)
    assert fault_server.count("/token") == 0


def test_paste_mode_end_of_input_cancels(fault_server: FaultServer) -> None:
    def paste() -> str:
        raise EOFError

    login = start(fault_server, paste=paste)
    assert isinstance(login.failure(), tokensmith.BrowserLoginCancelled)


def test_paste_mode_is_bounded_by_the_timeout_and_cancel(fault_server: FaultServer) -> None:
    never = threading.Event()

    def paste() -> str:
        never.wait(60)
        return ""

    login = start(fault_server, paste=paste, login_timeout=0.3)
    assert isinstance(login.failure(), tokensmith.BrowserLoginTimeout)
    login = start(fault_server, paste=paste)
    login.prompt()
    login.cancel.set()
    assert isinstance(login.failure(), tokensmith.BrowserLoginCancelled)
    never.set()


def test_a_paste_left_waiting_by_a_timed_out_login_does_not_take_the_next_logins_answer(
    fault_server: FaultServer,
) -> None:
    """The person retries after a timeout: the line they paste for the second login reaches the second login (the
    first login's reader, still blocked on the terminal, is adopted rather than raced by a second reader)."""
    lines: queue.Queue[str] = queue.Queue()
    calls: list[str] = []

    def paste() -> str:
        calls.append(threading.current_thread().name)
        return lines.get(timeout=30)

    first = start(fault_server, paste=paste, login_timeout=0.3)
    assert isinstance(first.failure(), tokensmith.BrowserLoginTimeout)
    second = start(fault_server, paste=paste)
    lines.put(second.redirect(code=CODE, state=second.state))
    assert second.result().access_token == ACCESS
    assert len(calls) == 1  # one reader, asked once: nothing left blocked to swallow a later answer
    assert [dict(r.form)["code"] for r in fault_server.recorded("/token")] == [CODE]


def test_an_answer_pasted_after_its_login_ended_is_not_given_to_the_next_login(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A late paste belongs to the login that timed out: it is dropped, and the next login reads afresh."""
    caplog.set_level(logging.DEBUG, logger="tokensmith")
    lines: queue.Queue[str] = queue.Queue()

    def paste() -> str:
        return lines.get(timeout=30)

    def dropped() -> bool:
        return any("pasted after its login ended was dropped" in r.getMessage() for r in caplog.records)

    first = start(fault_server, paste=paste, login_timeout=0.3)
    assert isinstance(first.failure(), tokensmith.BrowserLoginTimeout)
    lines.put(first.redirect(code="late-code", state=first.state))  # too late
    for _ in range(1000):  # bounded: a reader that never drops it fails the test instead of hanging it
        if dropped():
            break
        threading.Event().wait(0.01)
    assert dropped()
    second = start(fault_server, paste=paste)
    second.prompt()
    assert not second.done.wait(0.3)  # the late line was not taken as this login's answer
    lines.put(second.redirect(code=CODE, state=second.state))
    assert second.result().access_token == ACCESS
    assert [dict(r.form)["code"] for r in fault_server.recorded("/token")] == [CODE]


# --- secrets ------------------------------------------------------------------------------------------------------


def test_no_code_state_verifier_or_token_in_any_log_line_or_error(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tokensmith")
    login = start(fault_server, issuer=fault_server.base_url)
    get(login.redirect(code="forged-code-1234", state="forged-state-1234"))  # refused: logged
    get(login.redirect(code=CODE, state=login.state, iss="http://evil.example"))
    error = login.failure()
    login2 = start(fault_server)
    get(login2.redirect(code=CODE, state=login2.state))
    login2.result()
    verifier = dict(fault_server.recorded("/token")[0].form)["code_verifier"]
    text = caplog.text + str(error) + repr(error) + repr(login2.token)
    assert "refused a redirect" in caplog.text and "signed in" in caplog.text
    for secret in (CODE, "forged-code-1234", "forged-state-1234", login.state, login2.state, verifier, ACCESS, REFRESH,
                   login.param("nonce"), login2.param("code_challenge")):  # fmt: skip
        assert secret not in text, secret


def test_the_prompt_url_is_not_in_the_prompt_repr(fault_server: FaultServer) -> None:
    login = start(fault_server)
    prompt = login.prompt()
    assert login.state not in repr(prompt) and "code_challenge" not in repr(prompt)
    assert parse_qs(urlsplit(prompt.url).query)["state"] == [login.state]
    login.cancel.set()
    login.failure()
