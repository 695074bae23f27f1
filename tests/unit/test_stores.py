"""FileStore and KeyringStore: atomic, private, locked, never crashing on bad data, never logging a token.

Checklist items: C6 (the token with its expiry survives a round trip), C10 (no secret in any log record),
C26 (shared caches: atomic writes, cross-process locks, compare-and-delete so a rotated refresh token is never
wiped by a sibling).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import keyring
import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from keyring.errors import InitError, KeyringLocked, PasswordSetError
from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

from tokensmith import exceptions
from tokensmith.exceptions import TokensmithError
from tokensmith.stores import (
    FileStore,
    KeyringStore,
    Lease,
    LeasingStore,
    MemoryStore,
    StoreError,
    StoreLockTimeout,
    TokenStore,
    cache_key,
)
from tokensmith.stores import _fs as fs_mod
from tokensmith.stores import file as file_mod
from tokensmith.stores import keyring as keyring_mod
from tokensmith.stores.keyring import KeyringFallbackWarning
from tokensmith.token import Token

HELPER = str(Path(__file__).resolve().parents[1] / "helpers" / "store_child.py")
KEY = cache_key(issuer="https://idp.example", token_endpoint="https://idp.example/token", client_id="c", grant="d")
OTHER_KEY = cache_key(
    issuer="https://idp.example", token_endpoint="https://idp.example/token", client_id="x", grant="d"
)

ACCESS = "at-SECRET-aaaaaaaaaaaaaaaaaaaa"
REFRESH = "rt-SECRET-bbbbbbbbbbbbbbbbbbbb"
ID_TOKEN = "id-SECRET-cccccccccccccccccccc"
SECRETS = (ACCESS, REFRESH, ID_TOKEN)


def make_token(access: str = ACCESS, refresh: str | None = REFRESH, **kw: object) -> Token:
    fields: dict[str, object] = {
        "access_token": access,
        "refresh_token": refresh,
        "id_token": ID_TOKEN,
        "expires_at": 1_900_000_000.5,
        "issued_at": 1_899_996_400.25,
        "scope": "openid api:read",
        "token_type": "Bearer",
    }
    fields.update(kw)
    return Token(**fields)  # type: ignore[arg-type]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "tokensmith.stores" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


T = TypeVar("T")


def without_blocking(function: Callable[[], T]) -> T:
    """Run ``function`` in a daemon thread and return (or raise) what it did. A call that blocks (a FIFO opened
    for reading waits for a writer forever) fails the test instead of hanging the suite; the bound is generous
    and is not a timing claim."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as error:
            outcome.append((False, error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the store blocked"
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def enter_lock(fs: FileStore, key: str = KEY) -> None:
    with fs.lock(key):
        pass


def make_fifo(path: str) -> None:
    os.mkfifo(path, 0o600)
    _fifos.append(path)


_fifos: list[str] = []


@pytest.fixture(autouse=True)
def _unblock_fifos() -> Iterator[None]:
    """After each test, open every FIFO it made for writing once, so that a reader a broken store left blocked
    in a daemon thread wakes up."""
    yield
    while _fifos:
        path = _fifos.pop()
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "tokens", lock_timeout=10)


# --- FileStore: basics -------------------------------------------------------------------------------------


def test_round_trip_keeps_expiry_and_every_field(store: FileStore) -> None:
    """C6: what comes back is the token that went in, expiry included."""
    token = make_token()
    assert store.load(KEY) is None
    store.save(KEY, token)
    loaded = FileStore(store.directory).load(KEY)
    assert loaded == token
    assert loaded is not None
    assert (loaded.expires_at, loaded.issued_at, loaded.refresh_token, loaded.id_token) == (
        token.expires_at,
        token.issued_at,
        REFRESH,
        ID_TOKEN,
    )
    document = json.loads(Path(store.path_for(KEY)).read_text())
    assert document == {"version": 1, "token": token.to_dict()}


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FileStore(tmp_path), TokenStore)
    assert isinstance(KeyringStore(fallback=FileStore(tmp_path)), TokenStore)
    assert isinstance(MemoryStore(), TokenStore)


def test_default_directory_follows_xdg_and_is_created_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fs = FileStore()
    assert fs.directory == str(tmp_path / "xdg" / "tokensmith" / "tokens")
    assert fs.load(KEY) is None
    assert not (tmp_path / "xdg").exists()  # construction and a miss create nothing
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert FileStore().directory == str(tmp_path / "home" / ".cache" / "tokensmith" / "tokens")


@pytest.mark.parametrize("key", ["../escape", "", ".hidden", "a/b", "a..b", "x" * 201])
def test_keys_that_are_not_plain_file_names_are_rejected(store: FileStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.save(key, make_token())


# --- permissions and ownership -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277], ids=oct)
def test_directory_and_missing_parents_0700_and_files_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """C10: tokens are readable by their owner only; every directory the store creates is private (os.makedirs
    would give the parents the umask's mode), and a umask without owner bits does not lock us out."""
    (tmp_path / "a").mkdir(mode=0o755)  # an existing parent is not the store's to change
    (tmp_path / "a").chmod(0o755)
    directory = tmp_path / "a" / "b" / "c" / "tokens"
    fs = FileStore(directory)
    old = os.umask(umask)
    try:
        fs.save(KEY, make_token())
        with fs.lock(KEY):
            pass
    finally:
        os.umask(old)
    assert [mode_of(p) for p in (tmp_path / "a" / "b", tmp_path / "a" / "b" / "c", directory)] == [0o700] * 3
    assert mode_of(tmp_path / "a") == 0o755
    assert mode_of(directory / f"{KEY}.json") == 0o600
    assert mode_of(directory / f"{KEY}.lock") == 0o600
    assert FileStore(directory).load(KEY) == make_token()


@pytest.mark.parametrize("mode", [0o755, 0o777, 0o770], ids=oct)
def test_loose_directory_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=mode)
    directory.chmod(mode)
    fs = FileStore(directory)
    fs.save(KEY, make_token())
    assert mode_of(directory) == 0o700
    assert len(warnings_about(caplog, "tightened to 0700")) == 1


def test_loose_file_is_tightened_with_a_warning(store: FileStore, caplog: pytest.LogCaptureFixture) -> None:
    store.save(KEY, make_token())
    path = Path(store.path_for(KEY))
    path.chmod(0o644)
    assert FileStore(store.directory).load(KEY) == make_token()
    assert mode_of(path) == 0o600
    assert len(warnings_about(caplog, "tightened to 0600")) == 1


def test_file_owned_by_someone_else_is_ignored(
    store: FileStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(KEY, make_token())
    assert store.load(KEY) is not None  # the directory has been checked; now pretend another user wrote the file
    path = Path(store.path_for(KEY))
    before = path.read_bytes()
    other_uid = path.stat().st_uid + 1
    monkeypatch.setattr(file_mod, "_current_uid", lambda: other_uid)
    monkeypatch.setattr(fs_mod, "_current_uid", lambda: other_uid)
    assert store.load(KEY) is None
    assert len(warnings_about(caplog, "not by the current user")) == 1
    assert path.read_bytes() == before  # ignored, not quarantined or deleted


def test_symlink_in_place_of_a_token_file_is_not_followed(
    store: FileStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"version": 1, "token": make_token().to_dict()}))
    store.save(OTHER_KEY, make_token())  # creates the directory
    os.symlink(elsewhere, store.path_for(KEY))
    assert store.load(KEY) is None
    assert len(warnings_about(caplog, "is a symbolic link, not a regular file")) == 1


def test_directory_owned_by_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user could read our tokens there or plant theirs: load finds nothing (one warning however often
    it is asked), save/lock/delete raise, and the directory is left exactly as it was."""
    directory = tmp_path / "tokens"
    FileStore(directory).save(KEY, make_token())
    directory.chmod(0o755)
    owner = directory.stat().st_uid
    monkeypatch.setattr(file_mod, "_current_uid", lambda: owner + 1)
    monkeypatch.setattr(fs_mod, "_current_uid", lambda: owner + 1)
    fs = FileStore(directory)
    assert fs.load(KEY) is None
    assert fs.load(KEY) is None
    assert len(warnings_about(caplog, f"owned by uid {owner}")) == 1
    for operation in (
        lambda: fs.save(KEY, make_token(access="new")),
        lambda: enter_lock(fs),
        lambda: fs.delete(KEY),
    ):
        with pytest.raises(StoreError, match=f"owned by uid {owner}, not by the current user") as caught:
            operation()
        assert str(directory) in str(caught.value)
    assert mode_of(directory) == 0o755  # not ours to tighten
    monkeypatch.undo()
    assert FileStore(directory).load(KEY) == make_token()  # untouched


def test_group_writable_directory_that_cannot_be_tightened_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tokens"
    FileStore(directory).save(KEY, make_token())
    directory.chmod(0o777)

    def refused_chmod(path: object, mode: int, **kw: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refused_chmod)
    fs = FileStore(directory)
    assert fs.load(KEY) is None
    assert len(warnings_about(caplog, "writable by group/others (mode 777) and could not be tightened")) == 1
    with pytest.raises(StoreError, match="chmod 700"):
        fs.save(KEY, make_token(access="new"))
    with pytest.raises(StoreError, match="writable by group/others"):
        enter_lock(fs)
    assert mode_of(directory) == 0o777


def test_readable_directory_that_cannot_be_tightened_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read bits alone expose nothing (token files are 0600): warn, but keep serving and saving."""
    directory = tmp_path / "tokens"
    FileStore(directory).save(KEY, make_token())
    directory.chmod(0o755)

    def refused_chmod(path: object, mode: int, **kw: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refused_chmod)
    fs = FileStore(directory)
    assert fs.load(KEY) == make_token()
    fs.save(KEY, make_token(access="new"))
    assert fs.load(KEY) == make_token(access="new")
    assert len(warnings_about(caplog, "readable by group/others (mode 755) and could not be tightened")) == 1


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_token_directory_that_is_not_a_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    directory = tmp_path / "tokens"
    if kind == "fifo":
        os.mkfifo(directory)
    else:
        directory.write_text("not a directory")
    fs = FileStore(directory)
    assert without_blocking(lambda: fs.load(KEY)) is None  # load never raises
    assert len(warnings_about(caplog, "not a directory")) == 1
    with pytest.raises(StoreError, match="not a directory"):
        without_blocking(lambda: fs.save(KEY, make_token()))


# --- corrupt files -----------------------------------------------------------------------------------------

_VALID = (json.dumps({"version": 1, "token": make_token().to_dict()}) + "\n").encode()
CORRUPT = {
    "not-json": b"{not json",
    "empty": b"",
    "truncated": _VALID[: len(_VALID) // 2],
    "not-utf8": b"\xff\xfe\x00garbage",
    "a-list": b"[]",
    "no-token": b'{"version": 1}',
    "no-version": json.dumps({"token": make_token().to_dict()}).encode(),
    "wrong-type": b'{"version": 1, "token": {"access_token": 5}}',
    "expires-as-text": json.dumps(
        {"version": 1, "token": {**make_token().to_dict(), "expires_at": "tomorrow"}}
    ).encode(),
    "not-a-b64token": b'{"version": 1, "token": {"access_token": "has a space"}}',
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_file_is_quarantined_and_the_next_save_works(
    store: FileStore, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    """C26: a torn or foreign cache file never crashes a run and the evidence is kept."""
    store.save(OTHER_KEY, make_token())  # creates the directory
    path = Path(store.path_for(KEY))
    path.write_bytes(content)
    path.chmod(0o600)
    assert store.load(KEY) is None
    quarantined = list(Path(store.directory).glob(f"{KEY}.json.corrupt-*"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes() == content
    assert not path.exists()
    assert len(warnings_about(caplog, "moved aside")) == 1
    assert store.load(KEY) is None  # nothing left to warn about
    assert len(warnings_about(caplog, "moved aside")) == 1
    store.save(KEY, make_token())
    assert store.load(KEY) == make_token()


def test_second_quarantine_in_the_same_second_keeps_both(store: FileStore) -> None:
    store.save(OTHER_KEY, make_token())
    for content in (b"first", b"second"):
        Path(store.path_for(KEY)).write_bytes(content)
        assert store.load(KEY) is None
    kept = sorted(p.read_bytes() for p in Path(store.directory).glob(f"{KEY}.json.corrupt-*"))
    assert kept == [b"first", b"second"]


def test_newer_format_is_ignored_but_not_quarantined(store: FileStore, caplog: pytest.LogCaptureFixture) -> None:
    store.save(OTHER_KEY, make_token())
    path = Path(store.path_for(KEY))
    path.write_text(json.dumps({"version": 2, "token": {"whatever": True}}))
    assert store.load(KEY) is None
    assert path.exists()
    assert not list(Path(store.directory).glob("*.corrupt-*"))
    assert len(warnings_about(caplog, "newer than this tokensmith")) == 1


# --- writes ------------------------------------------------------------------------------------------------


def test_identical_save_does_not_rewrite(store: FileStore) -> None:
    store.save(KEY, make_token())
    path = Path(store.path_for(KEY))
    before = path.stat()
    time.sleep(0.01)
    store.save(KEY, make_token())
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    store.save(KEY, make_token(expires_at=1_900_000_001.0))
    assert path.stat().st_ino != before.st_ino
    assert store.load(KEY) == make_token(expires_at=1_900_000_001.0)


def test_failed_write_leaves_the_old_token_and_no_temporary_file(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(KEY, make_token())

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StoreError):
        store.save(KEY, make_token(access="another-token"))
    monkeypatch.undo()
    assert store.load(KEY) == make_token()
    assert sorted(os.listdir(store.directory)) == [f"{KEY}.json"]


def test_stale_temporary_files_are_removed(store: FileStore) -> None:
    store.save(OTHER_KEY, make_token())
    stale = Path(store.directory) / f".{KEY}.json.0123456789abcdef.tmp"
    stale_lease = Path(store.directory) / f".{KEY}.lease.0123456789abcdef.tmp"
    fresh = Path(store.directory) / f".{KEY}.json.fedcba9876543210.tmp"
    for path in (stale, stale_lease, fresh):
        path.write_bytes(b'{"version": 1, "tok')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(stale_lease, (old, old))
    FileStore(store.directory).save(KEY, make_token())
    assert not stale.exists()
    assert not stale_lease.exists()
    assert fresh.exists()  # may belong to a writer that is still running


# --- compare-and-delete ------------------------------------------------------------------------------------


def test_compare_and_delete(store: FileStore) -> None:
    """C26: the loser of a refresh race must not wipe the winner's freshly rotated token."""
    store.save(KEY, make_token(refresh="rotated-by-sibling"))
    assert store.delete(KEY, refresh_token=REFRESH) is False
    assert store.load(KEY) == make_token(refresh="rotated-by-sibling")
    assert store.delete(KEY, refresh_token="rotated-by-sibling") is True
    assert store.load(KEY) is None
    assert store.delete(KEY, refresh_token="rotated-by-sibling") is False
    store.save(KEY, make_token(refresh=None))
    assert store.delete(KEY, refresh_token=REFRESH) is False
    assert store.delete(KEY) is True
    assert store.delete(KEY) is False


def test_delete_while_holding_the_lock_is_reentrant(store: FileStore) -> None:
    """The client deletes under the lock it holds (C26): the lock is re-entrant for its thread, across stores."""
    store.save(KEY, make_token())
    sibling = FileStore(store.directory, lock_timeout=0.2)
    with store.lock(KEY), store.lock(KEY), sibling.lock(KEY):
        assert sibling.delete(KEY, refresh_token=REFRESH) is True
    assert store.load(KEY) is None


# --- locks -------------------------------------------------------------------------------------------------


def test_lock_excludes_other_threads(store: FileStore) -> None:
    """C26: threads sharing a store instance, or using separate instances on one directory, exclude each other."""
    counter = {"value": 0, "inside": 0, "max_inside": 0}
    sibling = FileStore(store.directory, lock_timeout=10)

    def work(fs: FileStore) -> None:
        for _ in range(25):
            with fs.lock(KEY):
                counter["inside"] += 1
                counter["max_inside"] = max(counter["max_inside"], counter["inside"])
                value = counter["value"]
                time.sleep(0.0005)
                counter["value"] = value + 1
                counter["inside"] -= 1

    threads = [threading.Thread(target=work, args=(store if i % 2 else sibling,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter["value"] == 8 * 25
    assert counter["max_inside"] == 1


def test_lock_excludes_other_processes(store: FileStore, tmp_path: Path) -> None:
    """C26: four processes take the lock in turn; their begin/end markers never interleave."""
    log, start = tmp_path / "log.txt", tmp_path / "start"
    iterations = 8
    children = [
        subprocess.Popen(
            [sys.executable, HELPER, "lock", store.directory, KEY, str(log), str(start), str(iterations)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        start.touch()
        for child in children:
            assert child.wait(timeout=60) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            if child.stdout is not None:
                child.stdout.close()
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * iterations * 2
    for begin, end in zip(lines[::2], lines[1::2], strict=True):
        kind_b, who_b, i_b = begin.split()
        kind_e, who_e, i_e = end.split()
        assert (kind_b, kind_e) == ("begin", "end")
        assert (who_b, i_b) == (who_e, i_e)
    assert len({line.split()[1] for line in lines}) == 4


def test_lock_timeout_when_another_thread_holds_it(store: FileStore) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with store.lock(KEY):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        for fs in (FileStore(store.directory, lock_timeout=0.1), FileStore(store.directory, lock_timeout=0)):
            with pytest.raises(StoreLockTimeout) as caught, fs.lock(KEY):
                pytest.fail("entered a lock another thread holds")
            assert isinstance(caught.value, TokensmithError)
            assert isinstance(caught.value, TimeoutError)
    finally:
        release.set()
        thread.join()
    with FileStore(store.directory, lock_timeout=0.1).lock(KEY):
        pass


def test_lock_timeout_when_another_process_holds_it(store: FileStore) -> None:
    child = subprocess.Popen(
        [sys.executable, HELPER, "hold", store.directory, KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "locked"
        with (
            pytest.raises(StoreLockTimeout, match="another process"),
            FileStore(store.directory, lock_timeout=0.2).lock(KEY),
        ):
            pytest.fail("entered a lock another process holds")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with FileStore(store.directory, lock_timeout=5).lock(KEY):
        pass


def test_lock_is_released_when_the_body_raises(store: FileStore) -> None:
    with pytest.raises(RuntimeError), store.lock(KEY):
        raise RuntimeError("boom")
    result: list[bool] = []

    def other() -> None:
        with FileStore(store.directory, lock_timeout=1).lock(KEY):
            result.append(True)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert result == [True]


# --- hostile file system -----------------------------------------------------------------------------------


def test_store_errors_are_typed_and_importable_from_every_old_place() -> None:
    assert file_mod.StoreError is StoreError is exceptions.StoreError
    assert file_mod.StoreLockTimeout is StoreLockTimeout is exceptions.StoreLockTimeout
    assert issubclass(StoreLockTimeout, StoreError)
    assert issubclass(StoreError, TokensmithError)
    assert {"StoreError", "StoreLockTimeout"} <= set(exceptions.__all__)


def _put_in_the_way(path: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Something other than a regular file at ``path``."""
    if kind == "fifo":
        make_fifo(path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "symlink":
        target = path + ".target"
        Path(target).write_text(_VALID.decode())
        os.symlink(target, path)
    elif kind == "dangling-symlink":
        os.symlink(path + ".nowhere", path)
    elif kind == "socket":
        monkeypatch.chdir(os.path.dirname(path))  # AF_UNIX paths are short: bind a relative name
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(os.path.basename(path))
        sock.close()
    else:
        raise AssertionError(kind)


IN_THE_WAY = ["fifo", "directory", "symlink", "dangling-symlink", "socket"]
KIND_WORDS = {
    "fifo": "a FIFO",
    "directory": "a directory",
    "symlink": "a symbolic link",
    "dangling-symlink": "a symbolic link",
    "socket": "a socket",
}


@pytest.mark.parametrize("kind", IN_THE_WAY)
def test_non_regular_token_path_is_refused_without_blocking(
    store: FileStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Issue 7 item 11: a FIFO at the token path used to block load() forever. Every kind of non-file is now
    ignored by readers and refused by writers, and left where it is."""
    store.save(OTHER_KEY, make_token())  # creates the directory
    path = store.path_for(KEY)
    _put_in_the_way(path, kind, monkeypatch)
    before = os.lstat(path)
    assert without_blocking(lambda: store.load(KEY)) is None
    assert len(warnings_about(caplog, f"is {KIND_WORDS[kind]}, not a regular file; ignored")) == 1
    with pytest.raises(StoreError, match=f"is {KIND_WORDS[kind]}, not a regular file: remove it") as caught:
        without_blocking(lambda: store.save(KEY, make_token()))
    assert path in str(caught.value)
    assert without_blocking(lambda: store.delete(KEY, refresh_token=REFRESH)) is False
    assert without_blocking(lambda: store.delete(KEY)) is False
    assert len(warnings_about(caplog, "left in place")) == 1
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert not list(Path(store.directory).glob("*.corrupt-*"))
    assert not [p for p in os.listdir(store.directory) if p.endswith(".tmp")]
    assert store.load(OTHER_KEY) == make_token()  # the rest of the store still works


def test_a_refused_file_is_warned_about_once_per_store_not_on_every_read(
    store: FileStore, caplog: pytest.LogCaptureFixture
) -> None:
    """One command reads the token file more than once (the fast path, the re-read under the store lock), and a
    service reads it on every call: the same warning is given once, then at debug (for 5 minutes per store)."""
    store.save(OTHER_KEY, make_token())
    os.mkfifo(store.path_for(KEY))
    caplog.set_level(logging.DEBUG, logger="tokensmith")
    for _ in range(3):
        assert without_blocking(lambda: store.load(KEY)) is None
    said = [r for r in caplog.records if "not a regular file; ignored" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert without_blocking(lambda: FileStore(store.directory).load(KEY)) is None  # another store says it again
    assert len(warnings_about(caplog, "not a regular file; ignored")) == 2


def test_device_at_the_token_path_is_never_opened(store: FileStore, caplog: pytest.LogCaptureFixture) -> None:
    store.save(OTHER_KEY, make_token())
    try:
        os.mknod(store.path_for(KEY), stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null
    except (PermissionError, AttributeError):
        pytest.skip("cannot create a device node here")
    assert without_blocking(lambda: store.load(KEY)) is None
    assert len(warnings_about(caplog, "is a device, not a regular file")) == 1
    with pytest.raises(StoreError, match="is a device"):
        store.save(KEY, make_token())
    assert stat.S_ISCHR(os.lstat(store.path_for(KEY)).st_mode)


@pytest.mark.parametrize("kind", IN_THE_WAY)
def test_non_regular_lock_path_is_refused_without_blocking(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The lock file is checked before filelock opens it (some filelock releases open it blocking)."""
    store.save(KEY, make_token())
    lock_path = os.path.join(store.directory, f"{KEY}.lock")
    _put_in_the_way(lock_path, kind, monkeypatch)
    with pytest.raises(StoreError, match=f"lock file .* is {KIND_WORDS[kind]}, not a regular file: remove it"):
        without_blocking(lambda: enter_lock(store))
    assert without_blocking(lambda: store.load(KEY)) == make_token()  # readers do not need the lock
    with pytest.raises(StoreError):
        without_blocking(lambda: store.delete(KEY))
    if kind == "directory":
        os.rmdir(lock_path)
    else:
        os.unlink(lock_path)
    enter_lock(store)  # once removed, locking works again (the failed attempts left no lock held)
    assert store.delete(KEY) is True


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_something_at_the_temporary_path_is_refused(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    store.save(KEY, make_token())
    monkeypatch.setattr(file_mod.secrets, "token_hex", lambda n: "0" * (2 * n))
    tmp = os.path.join(store.directory, f".{KEY}.json.{'0' * 16}.tmp")
    _put_in_the_way(tmp, kind, monkeypatch)
    with pytest.raises(StoreError, match="cannot write the token file") as caught:
        without_blocking(lambda: store.save(KEY, make_token(access="new")))
    assert store.path_for(KEY) in str(caught.value)
    assert os.path.lexists(tmp)  # not ours: left alone
    assert store.load(KEY) == make_token()


def test_disk_full_keeps_the_previous_token(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC mid-write: StoreError naming the file, the previous token intact, no temporary file left."""
    store.save(KEY, make_token())
    writes: list[int] = []

    def full_disk(fd: int, data: object) -> int:
        writes.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StoreError, match="No space left on device; no space left on the device") as caught:
        store.save(KEY, make_token(access="another-token"))
    monkeypatch.undo()
    assert writes  # the failure really came from the write
    assert store.path_for(KEY) in str(caught.value)
    assert "free some space" in str(caught.value)
    assert store.load(KEY) == make_token()
    assert sorted(os.listdir(store.directory)) == [f"{KEY}.json"]
    store.save(KEY, make_token(access="another-token"))  # space again: the save goes through
    assert store.load(KEY) == make_token(access="another-token")


def test_short_writes_are_completed(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may write less than asked (a signal, a nearly full pipe or disk): the rest is written too."""
    real_write = os.write
    calls: list[int] = []

    def dribble(fd: int, data: bytes) -> int:
        calls.append(fd)
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", dribble)
    token = make_token(access="a" * 200)
    store.save(KEY, token)
    monkeypatch.undo()
    assert len(calls) > 10
    assert FileStore(store.directory).load(KEY) == token


@pytest.fixture
def read_only(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """A function that turns the store's directory read-only, as a read-only mount would: chmod 0500 and,
    since tests may run as root (which ignores modes), every modifying call under the directory fails with
    EROFS. It returns the list of refused calls, which grows as the store tries."""
    refused: list[str] = []
    inside = os.path.realpath(store.directory)

    def under(path: object) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.realpath(os.fspath(path)).startswith(inside)

    def erofs(name: str) -> OSError:
        refused.append(name)
        return OSError(errno.EROFS, "Read-only file system")

    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def ro_open(path: str, flags: int, mode: int = 0o777, **kw: int | None) -> int:
        if under(path) and flags & writing:
            raise erofs("open")
        return real_open(path, flags, mode, **kw)

    def refuse(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def replacement(path: object, *args: object, **kw: object) -> object:
            if under(path):
                raise erofs(name)
            return real(path, *args, **kw)

        return replacement

    def ro_fchmod(fd: int, mode: int) -> None:
        raise erofs("fchmod")

    def activate() -> list[str]:
        os.chmod(store.directory, 0o500)
        monkeypatch.setattr(os, "open", ro_open)
        for name in ("replace", "rename", "unlink", "mkdir", "chmod", "rmdir"):
            monkeypatch.setattr(os, name, refuse(name, getattr(os, name)))
        monkeypatch.setattr(os, "fchmod", ro_fchmod)
        return refused

    yield activate
    monkeypatch.undo()
    os.chmod(store.directory, 0o700)


def test_read_only_store_still_serves_its_token(
    store: FileStore, read_only: Callable[[], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 7 item 11: on a read-only directory load works, an unchanged save is a no-op, and lock, a changed
    save and delete raise StoreError (never crash, never hang) so the client serves the token it has."""
    store.save(KEY, make_token())
    ro = FileStore(store.directory, lock_timeout=5)
    refused = read_only()
    assert ro.load(KEY) == make_token()
    ro.save(KEY, make_token())  # nothing to write
    assert refused == []
    with pytest.raises(StoreError, match="read-only: stored tokens can still be read") as caught:
        without_blocking(lambda: enter_lock(ro))
    assert f"{KEY}.lock" in str(caught.value)
    with pytest.raises(StoreError, match="Read-only file system") as caught:
        ro.save(KEY, make_token(access="new"))
    assert ro.path_for(KEY) in str(caught.value)
    with pytest.raises(StoreError, match="read-only"):
        without_blocking(lambda: ro.delete(KEY))
    assert ro.load(KEY) == make_token()
    assert refused  # the failures came from the (simulated) file system
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_read_only_store_with_a_loose_and_a_corrupt_file_warns_and_serves(
    store: FileStore, read_only: Callable[[], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """What load repairs on a writable store (a loose mode, a corrupt file to move aside) cannot be repaired
    here: it says so and carries on."""
    store.save(KEY, make_token())
    os.chmod(store.path_for(KEY), 0o644)
    Path(store.path_for(OTHER_KEY)).write_bytes(b"{torn")
    os.chmod(store.path_for(OTHER_KEY), 0o600)
    refused = read_only()
    ro = FileStore(store.directory)
    assert ro.load(KEY) == make_token()
    assert ro.load(OTHER_KEY) is None
    assert sorted(set(refused)) == ["fchmod", "rename"]
    assert len(warnings_about(caplog, "could not be tightened")) == 1
    assert len(warnings_about(caplog, "could not be moved aside")) == 1


@pytest.mark.parametrize("mode", [0o555, 0o500])
def test_read_only_directory_with_read_bits_for_others_still_serves(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    store.save(KEY, make_token())
    Path(store.directory).chmod(mode)
    real_chmod = os.chmod

    def ro_chmod(path: object, mode: int, **kw: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "chmod", ro_chmod)
    try:
        assert FileStore(store.directory).load(KEY) == make_token()
    finally:
        monkeypatch.undo()
        real_chmod(store.directory, 0o700)
    assert len(warnings_about(caplog, "could not be tightened")) == (1 if mode & 0o077 else 0)


# --- no secret in logs -------------------------------------------------------------------------------------


def test_no_token_value_in_any_log_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, restore_keyring: None
) -> None:
    """C10: every code path that logs (saves, permission fixes, quarantine, delete, keyring fallback, oversize)
    names keys, never token values."""
    caplog.set_level(logging.DEBUG)
    fs = FileStore(tmp_path / "tokens")
    fs.save(KEY, make_token())
    fs.save(KEY, make_token())
    Path(fs.path_for(KEY)).chmod(0o644)
    fs.load(KEY)
    Path(fs.path_for(OTHER_KEY)).write_bytes(_VALID[:-20])  # a torn file full of secrets
    fs.load(OTHER_KEY)
    fs.delete(KEY, refresh_token="wrong")
    fs.delete(KEY, refresh_token=REFRESH)

    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ks = KeyringStore(fallback=fs)
        ks.save(KEY, make_token())
        ks.load(KEY)
    kr = PlaintextKeyring()
    kr.file_path = str(tmp_path / "keyring.cfg")
    keyring.set_keyring(kr)
    ks = KeyringStore(fallback=fs)
    ks.save(KEY, make_token(access="x" * 3000))  # oversize: to the file, with a log line
    ks.save(KEY, make_token())
    ks.load(KEY)
    ks.delete(KEY, refresh_token=REFRESH)

    assert caplog.records
    secrets_ = (*SECRETS, "x" * 100)
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for secret in secrets_:
            assert secret not in text, f"{secret[:6]}... leaked in {record.name}: {record.msg}"
    for warning in caught:
        for secret in secrets_:
            assert secret not in str(warning.message)


# --- KeyringStore ------------------------------------------------------------------------------------------


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    saved = keyring.core._keyring_backend
    try:
        yield
    finally:
        keyring.core._keyring_backend = saved


@pytest.fixture
def plaintext_keyring(tmp_path: Path, restore_keyring: None) -> PlaintextKeyring:
    kr = PlaintextKeyring()
    kr.file_path = str(tmp_path / "keyring.cfg")
    keyring.set_keyring(kr)
    return kr


class _TestBackend(KeyringBackend):
    priority = -1  # never chosen by keyring's own discovery

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.calls: list[str] = []

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append("get")
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append("set")

    def delete_password(self, service: str, username: str) -> None:
        self.calls.append("delete")


class LockedKeyring(_TestBackend):
    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append("get")
        raise KeyringLocked("Failed to unlock the collection!")


class InitErrorKeyring(_TestBackend):
    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append("get")
        raise InitError("Failed to create the collection: Prompt dismissed.")


class HungKeyring(_TestBackend):
    """A D-Bus that never answers (until the test ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.unblock = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append("get")
        self.unblock.wait(30)
        return None


class ReadOnlyKeyring(_TestBackend):
    """Answers reads, refuses writes (a macOS Keychain rejecting an item, a read-only collection)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append("set")
        raise PasswordSetError("item rejected")


def test_keyring_round_trip_stores_expiry(plaintext_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    """C6: the whole token, expiry included, lives in the keyring; nothing on disk but the keyring's own file."""
    fallback = FileStore(tmp_path / "fallback")
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyringFallbackWarning)
        ks = KeyringStore("tokensmith-test", fallback=fallback)
        assert ks.load(KEY) is None
        ks.save(KEY, make_token())
        assert KeyringStore("tokensmith-test", fallback=fallback).load(KEY) == make_token()
        assert ks.uses_keyring()
    secret = plaintext_keyring.get_password("tokensmith-test", KEY)
    assert secret is not None
    assert json.loads(secret) == {"version": 1, "token": make_token().to_dict()}
    assert fallback.load(KEY) is None
    assert not Path(fallback.directory).exists()  # the fallback was never needed, so never created


def test_keyring_identical_save_does_not_write(
    plaintext_keyring: PlaintextKeyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = KeyringStore("tokensmith-test", fallback=FileStore(tmp_path / "fallback"))
    ks.save(KEY, make_token())
    writes: list[str] = []
    original = plaintext_keyring.set_password

    def counting_set_password(service: str, username: str, password: str) -> None:
        writes.append(username)
        original(service, username, password)

    monkeypatch.setattr(plaintext_keyring, "set_password", counting_set_password)
    ks.save(KEY, make_token())
    assert writes == []
    ks.save(KEY, make_token(refresh="new"))
    assert writes == [KEY]


def test_keyring_compare_and_delete_removes_both_places(plaintext_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    """C26 for the keyring: compare first, then remove from the keyring and from the fallback file."""
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback)
    ks.save(KEY, make_token(refresh="rotated"))
    fallback.save(KEY, make_token(refresh="rotated"))  # a stale copy from an earlier fallback
    assert ks.delete(KEY, refresh_token=REFRESH) is False
    assert ks.load(KEY) == make_token(refresh="rotated")
    with ks.lock(KEY):  # the caller may already hold the lock
        assert ks.delete(KEY, refresh_token="rotated") is True
    assert plaintext_keyring.get_password("tokensmith-test", KEY) is None
    assert fallback.load(KEY) is None
    assert ks.load(KEY) is None
    assert ks.delete(KEY) is False


def test_keyring_lock_is_the_fallback_file_lock(plaintext_keyring: PlaintextKeyring, tmp_path: Path) -> None:
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore(fallback=fallback)
    outcome: list[str] = []

    def other() -> None:
        try:
            with FileStore(fallback.directory, lock_timeout=0.1).lock(KEY):
                outcome.append("entered")
        except StoreLockTimeout:
            outcome.append("timeout")

    with ks.lock(KEY):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert outcome == ["timeout"]


BROKEN_BACKENDS = {
    "fail": fail.Keyring,
    "null": null.Keyring,
    "locked": LockedKeyring,
    "init-error": InitErrorKeyring,
    "hung": HungKeyring,
}


@pytest.mark.parametrize("backend_class", list(BROKEN_BACKENDS.values()), ids=list(BROKEN_BACKENDS))
def test_unusable_keyring_falls_back_to_files_with_one_warning(
    backend_class: type[KeyringBackend], tmp_path: Path, restore_keyring: None
) -> None:
    backend = backend_class()
    keyring.set_keyring(backend)
    fallback = FileStore(tmp_path / "fallback")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ks = KeyringStore("tokensmith-test", fallback=fallback, probe_timeout=0.2)
            assert not caught  # probing is lazy
            ks.save(KEY, make_token())
            assert ks.load(KEY) == make_token()
            ks.save(KEY, make_token(refresh="r2"))
            assert ks.delete(KEY, refresh_token="r2") is True
            ks.save(KEY, make_token())
            assert not ks.uses_keyring()
        fallback_warnings = [w for w in caught if issubclass(w.category, KeyringFallbackWarning)]
        assert len(fallback_warnings) == 1, [str(w.message) for w in caught]
        assert fallback.directory in str(fallback_warnings[0].message)
        assert fallback_warnings[0].filename == __file__  # points at the caller, not at tokensmith
        assert fallback.load(KEY) == make_token()  # the data landed in the file store
        if isinstance(backend, _TestBackend):
            assert backend.calls == ["get"]  # probed once, then left alone
            if isinstance(backend, HungKeyring):
                assert not backend.unblock.is_set()  # the caller came back while the keyring still hung
    finally:
        if isinstance(backend, HungKeyring):
            backend.unblock.set()


def test_missing_keyring_package_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_keyring: None
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore(fallback=fallback)
    with pytest.warns(KeyringFallbackWarning, match="not installed"):
        ks.save(KEY, make_token())
    assert fallback.load(KEY) == make_token()


def test_oversize_token_goes_to_the_fallback(
    plaintext_keyring: PlaintextKeyring, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Windows Credential Manager caps a secret at 2560 bytes: a big token (long JWT, many claims) goes to the
    file store with a warning; a later small one goes back to the keyring and the file copy is removed."""
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback)
    ks.save(KEY, make_token())
    big = make_token(access="x" * 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyringFallbackWarning)  # not a keyring failure: no global fallback
        ks.save(KEY, big)
        ks.save(KEY, make_token(access="y" * 3000))
    assert plaintext_keyring.get_password("tokensmith-test", KEY) is None
    assert fallback.load(KEY) == make_token(access="y" * 3000)
    assert ks.load(KEY) == make_token(access="y" * 3000)
    assert len(warnings_about(caplog, "more than the keyring takes")) == 1  # once per key
    ks.save(KEY, make_token())
    assert plaintext_keyring.get_password("tokensmith-test", KEY) is not None
    assert fallback.load(KEY) is None
    assert ks.load(KEY) == make_token()


def test_keyring_write_failure_after_a_good_probe_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_keyring: None
) -> None:
    backend = ReadOnlyKeyring()
    keyring.set_keyring(backend)
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback)
    ks.save(KEY, make_token())
    ks.save(KEY, make_token(refresh="r2"))
    assert fallback.load(KEY) == make_token(refresh="r2")
    assert ks.load(KEY) == make_token(refresh="r2")
    assert len(warnings_about(caplog, "keyring write failed")) == 1


class ScriptedKeyring(_TestBackend):
    """A working keyring (a dict) whose operations can be made to fail or hang after the probe."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.failing: set[str] = set()
        self.hanging: set[str] = set()
        self.unblock = threading.Event()

    def _act(self, operation: str, username: str) -> None:
        self.calls.append(operation)
        if username == "tokensmith-probe":
            return
        if operation in self.hanging:
            self.unblock.wait(30)
        if operation in self.failing:
            raise KeyringLocked(f"refused {operation}")

    def get_password(self, service: str, username: str) -> str | None:
        self._act("get", username)
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._act("set", username)
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._act("delete", username)
        self.entries.pop((service, username), None)


@pytest.fixture
def scripted_keyring(restore_keyring: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedKeyring]:
    backend = ScriptedKeyring()
    keyring.set_keyring(backend)
    # Only a call this keyring leaves hanging is given the store's (short) time box; the calls it answers get 30 s.
    # With 0.2 s for every call, a working call answered late on a loaded machine is taken for a hang: the store
    # leaves the keyring before the test makes it hang, and the counts and warnings are off.
    real_time_boxed = keyring_mod._time_boxed
    operations = {
        "tokensmith-keyring-read": "get",
        "tokensmith-keyring-write": "set",
        "tokensmith-keyring-delete": "delete",
    }

    def time_boxed(function: Callable[[], T], timeout: float, name: str) -> T:
        hangs = operations.get(name) in backend.hanging
        return real_time_boxed(function, timeout if hangs else max(timeout, 30.0), name)

    monkeypatch.setattr(keyring_mod, "_time_boxed", time_boxed)
    try:
        yield backend
    finally:
        backend.unblock.set()


@pytest.mark.parametrize("operation", ["get", "set"])
def test_keyring_call_that_hangs_after_the_probe_is_abandoned_with_one_warning(
    scripted_keyring: ScriptedKeyring, tmp_path: Path, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    """Issue 7 item 11: every keyring call is time-boxed, not only the probe. The first call that does not
    answer sends this store to the file for good, with one warning; the keyring is not asked again."""
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback, call_timeout=0.2)
    assert ks.load(KEY) is None  # probe + one read: the keyring works
    scripted_keyring.hanging.add(operation)
    calls_before_hang = len(scripted_keyring.calls)
    without_blocking(lambda: ks.save(KEY, make_token()))
    calls_after_hang = len(scripted_keyring.calls)
    assert calls_after_hang == calls_before_hang + (1 if operation == "get" else 2)
    assert not scripted_keyring.unblock.is_set()  # the caller came back while the keyring still hung
    assert fallback.load(KEY) == make_token()
    assert not ks.uses_keyring()
    ks.save(KEY, make_token(refresh="r2"))
    assert ks.load(KEY) == make_token(refresh="r2")
    assert ks.delete(KEY, refresh_token="r2") is True
    assert len(scripted_keyring.calls) == calls_after_hang  # never asked again
    assert len(warnings_about(caplog, "did not answer within 0.2 s")) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_keyring_delete_that_hangs_still_deletes_the_file_copy(
    scripted_keyring: ScriptedKeyring, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback, call_timeout=0.2)
    ks.save(KEY, make_token())
    fallback.save(KEY, make_token())  # as if an earlier save had fallen back
    scripted_keyring.hanging.add("delete")
    assert without_blocking(lambda: ks.delete(KEY)) is True
    assert fallback.load(KEY) is None
    assert len(warnings_about(caplog, "keyring delete for key")) == 1


def test_keyring_calls_that_keep_failing_warn_once(
    scripted_keyring: ScriptedKeyring, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing (not hanging) keyring is retried on later calls, but the user hears about it once."""
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback)
    assert ks.uses_keyring()
    scripted_keyring.failing.update({"get", "set", "delete"})
    for refresh in ("r1", "r2", "r3"):
        ks.save(KEY, make_token(refresh=refresh))
        assert ks.load(KEY) == make_token(refresh=refresh)
    assert ks.delete(KEY, refresh_token="r3") is True
    assert ks.uses_keyring()  # failures are per call; only a hang gives the keyring up
    assert scripted_keyring.calls.count("get") >= 5
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert len(warnings_about(caplog, "keyring read failed")) == 1


def test_a_token_saved_to_the_file_while_the_keyring_refused_wins_over_its_older_copy(
    scripted_keyring: ScriptedKeyring, tmp_path: Path
) -> None:
    """Never serve the keyring's stale copy (its refresh token may already be rotated away): the file copy is
    the newer one, in this process and in the next."""
    fallback = FileStore(tmp_path / "fallback")
    ks = KeyringStore("tokensmith-test", fallback=fallback)
    ks.save(KEY, make_token(refresh="old"))
    scripted_keyring.failing.add("set")
    ks.save(KEY, make_token(refresh="new"))
    assert scripted_keyring.entries[("tokensmith-test", KEY)]  # the old copy is still in the keyring
    assert ks.load(KEY) == make_token(refresh="new")
    assert KeyringStore("tokensmith-test", fallback=FileStore(fallback.directory)).load(KEY) == make_token(
        refresh="new"
    )
    scripted_keyring.failing.clear()
    ks.save(KEY, make_token(refresh="newest"))  # back in the keyring; the file copy is removed
    assert fallback.load(KEY) is None
    assert ks.load(KEY) == make_token(refresh="newest")


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_keyring_timeouts_must_be_seconds(tmp_path: Path, value: float) -> None:
    for name in ("probe_timeout", "call_timeout"):
        with pytest.raises(ValueError, match=name):
            KeyringStore(fallback=FileStore(tmp_path), **{name: value})  # type: ignore[arg-type]


# --- renewal leases ----------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "file", "keyring"])
def leasing_store(request: pytest.FixtureRequest, tmp_path: Path, restore_keyring: None) -> LeasingStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return FileStore(tmp_path / "tokens", lock_timeout=10)
    keyring.set_keyring(ScriptedKeyring())
    return KeyringStore("tokensmith-test", fallback=FileStore(tmp_path / "tokens", lock_timeout=10))


def test_claim_release_and_a_foreign_lease(leasing_store: LeasingStore) -> None:
    store = leasing_store
    assert isinstance(store, LeasingStore)
    assert isinstance(store, TokenStore)
    assert store.current_lease(KEY) is None
    before = time.time()
    mine = store.claim(KEY, "owner-a", "renew", 30)
    after = time.time()
    assert (mine.owner, mine.kind, mine.pid, mine.host) == ("owner-a", "renew", os.getpid(), socket.gethostname())
    assert before + 30 <= mine.expires_at <= after + 30
    assert mine.is_live(after)
    assert store.current_lease(KEY) == mine

    # Someone else finds our live lease and writes nothing.
    assert store.claim(KEY, "owner-b", "login", 60) == mine
    assert store.current_lease(KEY) == mine
    store.release(KEY, "owner-b")  # not theirs to release
    assert store.current_lease(KEY) == mine

    # We renew ours (and may change its kind).
    renewed = store.claim(KEY, "owner-a", "login", 60)
    assert (renewed.owner, renewed.kind) == ("owner-a", "login")
    assert renewed.expires_at > mine.expires_at
    assert store.current_lease(KEY) == renewed

    store.release(KEY, "owner-a")
    assert store.current_lease(KEY) is None
    store.release(KEY, "owner-a")  # a missing lease: nothing to do, no error
    assert store.claim(KEY, "owner-b", "renew", 30).owner == "owner-b"
    assert store.current_lease(OTHER_KEY) is None  # leases are per key


def test_claim_is_reentrant_under_the_callers_lock_and_delete_leaves_the_lease(leasing_store: LeasingStore) -> None:
    store = leasing_store
    assert isinstance(store, (FileStore, KeyringStore, MemoryStore))
    store.save(KEY, make_token())
    with store.lock(KEY):
        lease = store.claim(KEY, "owner-a", "renew", 30)
        assert store.load(KEY) == make_token()
    assert store.delete(KEY) is True
    assert store.load(KEY) is None
    assert store.current_lease(KEY) == lease


def test_expired_lease_is_taken_over(leasing_store: LeasingStore) -> None:
    store = leasing_store
    first = store.claim(KEY, "owner-a", "renew", 0.05)
    while first.is_live(time.time()):  # wait for the lease to lapse; no claim about how long that takes
        time.sleep(0.01)
    taken = store.claim(KEY, "owner-b", "renew", 30)
    assert taken.owner == "owner-b"
    assert store.current_lease(KEY) == taken
    store.release(KEY, "owner-a")  # the late release of the old owner leaves the new lease alone
    assert store.current_lease(KEY) == taken


@pytest.mark.parametrize(
    ("owner", "kind", "ttl"),
    [
        ("", "renew", 1),
        ("a", "refresh", 1),
        ("a", "renew", 0),
        ("a", "renew", -1),
        ("a", "renew", float("inf")),
        ("a", "renew", float("nan")),
        ("a", "renew", True),
        ("a\n", "renew", 1),
        ("a" * 201, "renew", 1),
    ],
)
def test_claim_rejects_nonsense(leasing_store: LeasingStore, owner: str, kind: str, ttl: float) -> None:
    with pytest.raises(ValueError):
        leasing_store.claim(KEY, owner, kind, ttl)
    assert leasing_store.current_lease(KEY) is None


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process (until reused, which a lease's expiry bounds anyway)
    return child.pid


def test_lease_liveness() -> None:
    now = time.time()
    here = socket.gethostname()
    dead = _dead_pid()
    assert Lease("o", "renew", now + 60, os.getpid(), here).is_live(now)
    assert not Lease("o", "renew", now - 1, os.getpid(), here).is_live(now)
    assert not Lease("o", "renew", now, os.getpid(), here).is_live(now)
    assert not Lease("o", "renew", float("nan"), os.getpid(), here).is_live(now)
    assert not Lease("o", "renew", now + 60, dead, here).is_live(now)
    assert Lease("o", "renew", now + 60, dead, here + ".elsewhere").is_live(now)  # a pid means nothing there
    assert not Lease("o", "renew", now + 60, 2**80, here).is_live(now)


def _spawn_claimers(directory: str, start: str, count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, HELPER, "claim", directory, KEY, start],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(count)
    ]


def _finish(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.stdin is not None:
            child.stdin.close()
    for child in children:
        try:
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()


def test_lease_of_a_dead_process_is_taken_over(store: FileStore) -> None:
    """A renewer that crashed does not hold the key until its lease expires (same host: its pid is checked)."""
    [child] = _spawn_claimers(store.directory, "-", 1)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        owner = child.stdout.readline().strip()
        assert owner == f"child-{child.pid}"
        held = store.current_lease(KEY)
        assert held is not None and (held.owner, held.pid) == (owner, child.pid)
        assert store.claim(KEY, "parent", "renew", 30) == held  # alive: we lose
    finally:
        _finish([child])
    assert child.returncode == 0
    taken = store.claim(KEY, "parent", "renew", 30)  # its process is gone: we take over
    assert (taken.owner, taken.pid) == ("parent", os.getpid())


def test_processes_racing_to_claim_one_wins(store: FileStore, tmp_path: Path) -> None:
    """Six processes claim the same key at once: exactly one gets its own lease, the others all get the
    winner's. (The winner stays alive until every claim is made: a dead winner's lease would be void.)"""
    start = tmp_path / "start"
    children = _spawn_claimers(store.directory, str(start), 6)
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        start.touch()
        answers = {}
        for child in children:
            assert child.stdout is not None
            answers[f"child-{child.pid}"] = child.stdout.readline().strip()
        winners = [me for me, owner in answers.items() if owner == me]
        assert len(winners) == 1, answers
        assert set(answers.values()) == set(winners)
        lease = store.current_lease(KEY)
        assert lease is not None and lease.owner == winners[0]
    finally:
        _finish(children)
    assert [child.returncode for child in children] == [0] * 6


def test_lease_file_is_private_json_written_atomically(store: FileStore) -> None:
    lease = store.claim(KEY, "owner-a", "renew", 30)
    path = Path(store.directory) / f"{KEY}.lease"
    assert mode_of(path) == 0o600
    assert json.loads(path.read_text()) == {
        "version": 1,
        "lease": {
            "owner": "owner-a",
            "kind": "renew",
            "expires_at": lease.expires_at,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            # When this process started (where the OS tells it): tells a reused pid from the claimant's.
            **({} if lease.started is None else {"started": lease.started}),
        },
    }
    assert sorted(os.listdir(store.directory)) == [f"{KEY}.lease", f"{KEY}.lock"]
    assert FileStore(store.directory).current_lease(KEY) == lease


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b"\xff" * 10,
        b'{"version": 1}',
        b'{"version": 0, "lease": {"owner": "x", "kind": "renew", "expires_at": 1e12, "pid": 1, "host": "h"}}',
        b'{"version": 1, "lease": {"owner": "x"}}',
        b'{"version": 1, "lease": {"owner": "x", "kind": "renew", "expires_at": 1e400, "pid": 1, "host": "h"}}',
        b'{"version": 1, "lease": {"owner": "x", "kind": "renew", "expires_at": 1e12, "pid": 0, "host": "h"}}',
    ],
)
def test_corrupt_lease_counts_as_none_and_is_replaced(
    store: FileStore, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    store.save(KEY, make_token())
    path = Path(store.directory) / f"{KEY}.lease"
    path.write_bytes(content)
    assert store.current_lease(KEY) is None
    assert len(warnings_about(caplog, "treated as no lease")) == 1
    store.release(KEY, "owner-a")  # nothing of ours there: no error
    lease = store.claim(KEY, "owner-a", "renew", 30)
    assert lease.owner == "owner-a"
    assert store.current_lease(KEY) == lease
    assert not list(Path(store.directory).glob("*.corrupt-*"))  # leases are not evidence: simply replaced


def test_lease_of_a_newer_format_still_counts(store: FileStore) -> None:
    """A newer tokensmith renewing the same key must keep this one from renewing at the same time."""
    store.save(KEY, make_token())
    document = {
        "version": 7,
        "lease": {
            "owner": "future",
            "kind": "renew",
            "expires_at": time.time() + 60,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "extra": [1, 2],
        },
        "more": True,
    }
    (Path(store.directory) / f"{KEY}.lease").write_text(json.dumps(document))
    assert store.claim(KEY, "me", "renew", 30).owner == "future"


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_non_regular_lease_path_is_refused_without_blocking(
    store: FileStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    store.save(KEY, make_token())
    path = os.path.join(store.directory, f"{KEY}.lease")
    _put_in_the_way(path, kind, monkeypatch)
    assert without_blocking(lambda: store.current_lease(KEY)) is None
    assert len(warnings_about(caplog, f"lease file for key {KEY[:12]} is {KIND_WORDS[kind]}")) == 1
    with pytest.raises(StoreError, match=f"lease file .* is {KIND_WORDS[kind]}, not a regular file: remove it"):
        without_blocking(lambda: store.claim(KEY, "owner-a", "renew", 30))
    without_blocking(lambda: store.release(KEY, "owner-a"))  # nothing of ours: no error
    assert os.path.lexists(path)
    assert store.load(KEY) == make_token()


def test_lease_on_a_read_only_store(store: FileStore, read_only: Callable[[], list[str]]) -> None:
    """Reading a lease works; claiming one raises StoreError (the client then renews without one, or not at
    all); releasing a lease we do not hold needs no write and does not raise."""
    store.save(KEY, make_token())
    lease = store.claim(KEY, "owner-a", "renew", 30)
    refused = read_only()
    ro = FileStore(store.directory, lock_timeout=5)
    assert ro.current_lease(KEY) == lease
    ro.release(KEY, "owner-b")
    with pytest.raises(StoreError, match="read-only"):
        without_blocking(lambda: ro.claim(KEY, "owner-b", "renew", 30))
    with pytest.raises(StoreError, match="read-only"):
        without_blocking(lambda: ro.release(KEY, "owner-a"))  # ours, but it cannot be removed: a real failure
    assert refused
    assert ro.current_lease(KEY) == lease


def test_claim_on_a_full_disk_keeps_the_previous_lease(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    old = store.claim(KEY, "owner-a", "renew", 0.05)
    while old.is_live(time.time()):
        time.sleep(0.01)

    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StoreError, match=r"lease file .*no space left"):
        store.claim(KEY, "owner-b", "renew", 30)
    monkeypatch.undo()
    assert store.current_lease(KEY) == old
    assert not [p for p in os.listdir(store.directory) if p.endswith(".tmp")]
