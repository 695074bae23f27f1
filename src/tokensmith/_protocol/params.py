"""Request parameters: scope syntax (C4) and omission of empty values (C3)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .messages import FormPairs

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

ScopeInput = str | Iterable[str] | None


def normalize_scope(scopes: ScopeInput) -> str | None:
    """Join scopes into the space-delimited ``scope`` value, or None when there are none.

    Accepts a list (each item may itself hold space-separated scopes) or one space-separated string. Order is
    kept, duplicates dropped. A token with a space, ``"`` or ``\\`` is not a scope: ValueError, never a mangled
    request. Scopes are otherwise sent exactly as given (the seed module stripped ``[]'`` from them).
    """
    if scopes is None:
        return None
    items = [scopes] if isinstance(scopes, str) else list(scopes)
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"scope must be a string, not {type(item).__name__}")
        for token in item.split():
            if not _SCOPE_TOKEN.fullmatch(token):
                raise ValueError(f"invalid scope token {token!r} (RFC 6749 §3.3)")
            seen.setdefault(token, None)
    return " ".join(seen) or None


def add_param(form: FormPairs, name: str, value: str | Iterable[str] | None) -> None:
    """Append ``name=value``; skip None and empty values (RFC 6749 §3.2: empty means omitted).
    An iterable value repeats the parameter (RFC 8707 ``resource``, RFC 8693 ``audience``)."""
    if value is None:
        return
    values = [value] if isinstance(value, str) else list(value)
    for v in values:
        if not isinstance(v, str):
            raise ValueError(f"parameter {name!r} must be a string, not {type(v).__name__}")
        if v:
            form.append((name, v))
