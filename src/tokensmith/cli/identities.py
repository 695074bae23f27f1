"""The identities the command line has stored tokens for, so ``status`` and ``logout --all`` can find them.

A store holds tokens under opaque keys (hashes). Next to the token directory, ``identities/<key>.json`` records
the non-secret settings that produced each key (profile, issuer, client id, scopes, store): enough to describe it
and to rebuild its client for a logout. Never a token, never a secret (only where a secret is read from).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from ..stores._fs import default_directory
from .config import SETTINGS, Settings

_PER_RUN = frozenset({"client_secret_stdin", "ca_bundle", "insecure_skip_tls_verify", "timeout", "git_username"})

#: The settings worth recording: all of them but the ones that only shape one run (where a secret came from on
#: stdin is not reproducible, so a logout then asks for it; TLS and timeouts are the caller's business each time).
_RECORDED = ("profile", *(name for name in SETTINGS if name not in _PER_RUN))


@dataclass(frozen=True)
class Identity:
    key: str
    settings: dict[str, object]

    @property
    def label(self) -> str:
        profile = self.settings.get("profile")
        where = self.settings.get("issuer") or self.settings.get("token_endpoint")
        return f"{profile}" if profile else f"{where} ({self.settings.get('client_id')})"

    def to_settings(self) -> Settings:
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.settings.items() if v is not None}
        return Settings(origin={k: "recorded login" for k in values}, **values)


def directory(settings: Settings | None = None) -> str:
    """``identities/`` next to the token directory (the default one, or ``--store-dir``'s parent)."""
    tokens = settings.store_dir if settings is not None and settings.store_dir else default_directory()
    return os.path.join(os.path.dirname(os.path.abspath(os.path.expanduser(tokens))), "identities")


def record(settings: Settings, key: str) -> None:
    """Remember (atomically, 0600) which settings produced ``key``. Best effort: status is informational."""
    values = {name: getattr(settings, name) for name in _RECORDED}
    # The grant that produced the key, not only a flow given explicitly: otherwise whether TOKENSMITH_CLIENT_SECRET
    # happens to be set when `logout --all` runs would decide the grant, hence the key, and the token be missed.
    values["flow"] = "client-credentials" if settings.grant == "client_credentials" else "device"
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    data = json.dumps({"version": 1, "key": key, "settings": values}, sort_keys=True, indent=1).encode()
    folder = directory(settings)
    path = os.path.join(folder, key + ".json")
    with contextlib.suppress(OSError):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as handle:
                if handle.read() == data:
                    return
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".identity-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return


def forget(settings: Settings, key: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(directory(settings), key + ".json"))


def recorded(settings: Settings | None = None) -> Iterator[Identity]:
    """Every recorded identity (unreadable records are skipped)."""
    folder = directory(settings)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                document = json.loads(handle.read(64 * 1024))
            key, values = document["key"], document["settings"]
            if isinstance(key, str) and isinstance(values, dict) and name == key + ".json":
                yield Identity(key, values)
        except (OSError, ValueError, KeyError, TypeError):
            continue


def as_dict(identity: Identity) -> dict[str, object]:
    return asdict(identity)
