"""Run flytekit on tokensmith: one call, :func:`install`, early in the program.

After ``install()``:

- ``flytekit.clients.auth.token_client`` *is* ``tokensmith.token_client``: the same module object in
  ``sys.modules``, as the ``token_client`` attribute of the ``flytekit.clients.auth`` package, and wherever an
  already-imported ``flytekit`` module bound it (``authenticator`` did ``from . import token_client``). So
  flytekit's authenticators call tokensmith's functions, and ``patch("flytekit.clients.auth.token_client.
  requests.Session")`` or ``patch("flytekit.clients.auth.token_client.get_token")`` in a test suite patches them.
- ``flytekit.clients.auth.exceptions.AuthenticationError`` *is* ``tokensmith.AuthenticationError`` (the same
  for ``AuthenticationPending`` and ``AccessTokenNotFoundError``), and every already-imported ``flytekit`` /
  ``flytekitplugins`` module that imported those names is rebound too. flytekit's ``except
  AuthenticationError`` clauses then catch tokensmith's verdicts (``InvalidGrant``, ``AccessDenied``, ...),
  while transport failures and non-OAuth answers (``ConnectError``, an HTML 502 page) stay ``requests``
  exceptions, so ``DeviceCodeAuthenticator`` keeps the refresh token through a network blip.

It works whether flytekit is imported before or after ``install()``: for "after", a ``sys.meta_path`` finder
serves ``flytekit.clients.auth.token_client`` as tokensmith's module and patches
``flytekit.clients.auth.exceptions`` right after it executes. Importing this module imports neither flytekit nor
``requests``; ``install()`` imports ``requests`` (through ``tokensmith.token_client``) but never flytekit, and
works without flytekit installed (only the finder is registered then).

What cannot be reached: names that *your own* modules imported from flytekit before ``install()`` (``from
flytekit.clients.auth.exceptions import AuthenticationError`` in your package) keep flytekit's original objects;
call ``install()`` before importing them (an entry point or ``sitecustomize``). Subclasses of flytekit's
exception classes defined before ``install()`` keep their original base.

:func:`uninstall` puts flytekit's own module and classes back (meant for tests).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["install", "installed", "uninstall"]

logger = logging.getLogger("tokensmith.integrations.flytekit")

AUTH_PACKAGE = "flytekit.clients.auth"
EXCEPTIONS_MODULE = "flytekit.clients.auth.exceptions"
TOKEN_CLIENT_MODULE = "flytekit.clients.auth.token_client"
#: The exception classes flytekit's auth code raises and catches; tokensmith defines the same names.
EXCEPTION_NAMES = ("AuthenticationError", "AuthenticationPending", "AccessTokenNotFoundError")
#: Functions and classes of flytekit's ``token_client`` that other modules may have imported by name.
#: (Its string constants are not rebound: equal strings may be one interned object used for anything.)
TOKEN_CLIENT_NAMES = (
    "DeviceCodeResponse",
    "GrantType",
    "get_basic_authorization_header",
    "get_device_code",
    "get_token",
    "poll_token_endpoint",
)
#: Modules whose bindings are rewritten: flytekit and its plugins.
_REBOUND_PACKAGES = ("flytekit", "flytekitplugins")

_lock = threading.RLock()


@dataclass
class _Bridge:
    """What ``install()`` replaced, so that ``uninstall()`` can put it back."""

    token_client: types.ModuleType
    finder: _Finder | None = None
    #: Exception name -> flytekit's original class (known once the exceptions module has executed).
    flytekit_exceptions: dict[str, type] = field(default_factory=dict)
    #: flytekit's own token_client module, if it was imported before ``install()``.
    flytekit_token_client: types.ModuleType | None = None

    def replacements(self) -> list[tuple[object, object]]:
        """``(flytekit's object, tokensmith's object)`` pairs known so far."""
        from .. import exceptions

        pairs: list[tuple[object, object]] = [
            (original, getattr(exceptions, name)) for name, original in self.flytekit_exceptions.items()
        ]
        if self.flytekit_token_client is not None:
            pairs.append((self.flytekit_token_client, self.token_client))
            for name in TOKEN_CLIENT_NAMES:
                original = getattr(self.flytekit_token_client, name, None)
                if original is not None:
                    pairs.append((original, getattr(self.token_client, name)))
        return pairs

    def patch_exceptions(self, module: types.ModuleType) -> None:
        """Put tokensmith's classes in flytekit's exceptions module, remembering flytekit's."""
        from .. import exceptions

        for name in EXCEPTION_NAMES:
            original = getattr(module, name, None)
            ours = getattr(exceptions, name)
            if isinstance(original, type) and original is not ours:
                self.flytekit_exceptions.setdefault(name, original)
                setattr(module, name, ours)


class _TokenClientAlias(importlib.abc.Loader):
    """Loads ``flytekit.clients.auth.token_client`` as tokensmith's module: ``exec_module`` replaces the
    placeholder in ``sys.modules`` with it, and the import system returns (and binds on the parent package)
    whatever ``sys.modules`` holds then. tokensmith's module keeps its own ``__spec__`` and ``__name__``."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # a throwaway placeholder

    def exec_module(self, module: types.ModuleType) -> None:
        sys.modules[module.__name__] = self.module


class _PatchingLoader(importlib.abc.Loader):
    """Runs flytekit's real loader for its exceptions module, then puts tokensmith's classes in it. The module
    ends up with the real loader as ``__loader__`` and ``__spec__.loader`` (tracebacks, ``get_source``)."""

    def __init__(self, loader: importlib.abc.Loader, bridge: _Bridge) -> None:
        self.loader = loader
        self.bridge = bridge

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: types.ModuleType) -> None:
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        with _lock:
            if _bridge is self.bridge:  # not uninstalled meanwhile
                self.bridge.patch_exceptions(module)


class _Finder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` while installed; answers for the two flytekit modules only."""

    def __init__(self, bridge: _Bridge) -> None:
        self.bridge = bridge

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == TOKEN_CLIENT_MODULE:
            return importlib.machinery.ModuleSpec(fullname, _TokenClientAlias(self.bridge.token_client))
        if fullname != EXCEPTIONS_MODULE:
            return None
        for finder in list(sys.meta_path):  # the finders after us (an editable install adds its own)
            if finder is self or isinstance(finder, _Finder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, self.bridge)
                return spec  # type: ignore[no-any-return]
        return None


_bridge: _Bridge | None = None


def installed() -> bool:
    """True between :func:`install` and :func:`uninstall`."""
    return _bridge is not None


def install() -> None:
    """Make flytekit's ``token_client`` and auth exception classes tokensmith's (see the module docstring).

    Idempotent and thread-safe. Call it early, before flytekit's authenticators run. Imports ``requests``;
    never imports flytekit.
    """
    global _bridge
    with _lock:
        if _bridge is not None:
            return
        from .. import token_client

        bridge = _Bridge(token_client=token_client)
        bridge.finder = _Finder(bridge)
        sys.meta_path.insert(0, bridge.finder)
        _bridge = bridge

        exceptions_module = sys.modules.get(EXCEPTIONS_MODULE)
        if exceptions_module is not None:
            bridge.patch_exceptions(exceptions_module)
        displaced: list[types.ModuleType] = []
        flytekit_token_client = sys.modules.get(TOKEN_CLIENT_MODULE)
        if flytekit_token_client is not None and flytekit_token_client is not token_client:
            bridge.flytekit_token_client = flytekit_token_client
            displaced.append(flytekit_token_client)
            _set_module(TOKEN_CLIENT_MODULE, token_client)
        # flytekit's displaced token_client is rebound too: whoever still holds its functions raises tokensmith's
        # exception classes from them.
        rebound = _rebind(bridge.replacements(), extra=displaced)
        logger.debug("flytekit bridge installed (%d names rebound in already-imported modules)", rebound)


def uninstall() -> None:
    """Undo :func:`install`: flytekit's own ``token_client`` and exception classes are back in flytekit's
    modules (flytekit's ``token_client`` is imported now if flytekit was imported while installed). For tests."""
    global _bridge
    with _lock:
        bridge = _bridge
        if bridge is None:
            return
        _bridge = None
        if bridge.finder is not None:
            # A plain list: remove by identity (``list.remove`` compares with ``==``, which is identity here).
            sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not bridge.finder]

        exceptions_module = sys.modules.get(EXCEPTIONS_MODULE)
        if exceptions_module is not None:
            for name, original in bridge.flytekit_exceptions.items():
                if getattr(exceptions_module, name, None) is getattr(_tokensmith_exceptions(), name):
                    setattr(exceptions_module, name, original)

        if sys.modules.get(TOKEN_CLIENT_MODULE) is bridge.token_client:
            if bridge.flytekit_token_client is not None:
                _set_module(TOKEN_CLIENT_MODULE, bridge.flytekit_token_client)
            else:
                # flytekit was imported while installed: its token_client never ran. Import it now (the finder is
                # gone), so that modules holding tokensmith's can be given flytekit's back.
                del sys.modules[TOKEN_CLIENT_MODULE]
                package = sys.modules.get(AUTH_PACKAGE)
                if package is not None and getattr(package, "token_client", None) is bridge.token_client:
                    delattr(package, "token_client")
                bridge.flytekit_token_client = importlib.import_module(TOKEN_CLIENT_MODULE)
        _rebind([(ours, theirs) for theirs, ours in bridge.replacements()])
        logger.debug("flytekit bridge uninstalled")


def _tokensmith_exceptions() -> types.ModuleType:
    from .. import exceptions

    return exceptions


def _set_module(name: str, module: types.ModuleType) -> None:
    """``module`` as ``name`` in ``sys.modules`` and as the attribute of its (imported) parent package."""
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None:
        setattr(package, child, module)


def _rebind(pairs: Iterable[tuple[object, object]], extra: Iterable[types.ModuleType] = ()) -> int:
    """In every imported flytekit/flytekitplugins module (and ``extra``), replace each attribute that *is* the
    first object of a pair by the second. Identity only: equal objects are left alone. Returns the count."""
    by_id = {id(old): (old, new) for old, new in pairs}
    if not by_id:
        return 0
    modules = [
        module
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in _REBOUND_PACKAGES and isinstance(module, types.ModuleType)
    ]
    count = 0
    for module in [*modules, *extra]:
        for attribute, value in list(vars(module).items()):
            pair = by_id.get(id(value))
            if pair is not None and pair[0] is value:
                setattr(module, attribute, pair[1])
                count += 1
    return count
