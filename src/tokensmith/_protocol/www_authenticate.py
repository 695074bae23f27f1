"""``WWW-Authenticate`` parsing (RFC 9110 §11.6.1) and the RFC 6750 §3.1 ``invalid_token`` rule (C12).

Pure functions over header strings; used by the ``requests`` and ``httpx`` auth handlers.
"""

from __future__ import annotations

#: tchar (RFC 9110 §5.6.2).
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: token68 characters before the trailing "=" padding (RFC 9110 §11.2).
_T68CHAR = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"
#: Key under which a challenge's token68 (e.g. ``Negotiate abc==``) appears in its parameter dict. It cannot
#: collide with a parameter name, which is at least one tchar.
TOKEN68 = ""


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _read_token(s: str, i: int) -> int:
    """End index of the (possibly empty) tchar run starting at ``i``."""
    n = len(s)
    while i < n and s[i] in _TCHAR:
        i += 1
    return i


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """``s[i]`` is the opening quote. Returns the unescaped content and the index after the closing quote
    (or the end of ``s`` if the string is unterminated, which is accepted leniently)."""
    out: list[str] = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            i += 1
            c = s[i]
        out.append(c)
        i += 1
    return "".join(out), n


def _token68_end(s: str, i: int) -> int:
    """If a token68 starts at ``i`` and is the whole challenge body (only whitespace follows before a comma or
    the end), return its end index; otherwise -1."""
    n = len(s)
    j = i
    while j < n and s[j] in _T68CHAR:
        j += 1
    if j == i:
        return -1
    while j < n and s[j] == "=":
        j += 1
    k = _skip_ws(s, j)
    return j if k == n or s[k] == "," else -1


def _skip_to_comma(s: str, i: int) -> int:
    """Recover from junk: skip to the next comma outside a quoted string (or the end)."""
    n = len(s)
    while i < n and s[i] != ",":
        if s[i] == '"':
            _, i = _read_quoted(s, i)
        else:
            i += 1
    return i


def _starts_param(s: str, i: int) -> bool:
    """Does an ``auth-param`` (``token BWS "="``) start at ``i``, rather than a new challenge's scheme?"""
    j = _read_token(s, i)
    if j == i:
        return False
    j = _skip_ws(s, j)
    return j < len(s) and s[j] == "="


def parse_www_authenticate(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a ``WWW-Authenticate`` value into ``[(scheme, params), ...]``, in order.

    Grammar (RFC 9110 §11.6.1, §11.2)::

        WWW-Authenticate = #challenge
        challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
        auth-param = token BWS "=" BWS ( token / quoted-string )

    - Several challenges may share one header (``Basic realm="x", Bearer error="invalid_token"``), and several
      header lines joined with ``", "`` (as ``requests`` and ``httpx`` do) parse the same way.
    - Schemes and parameter names are case-insensitive: both are returned **lower-cased**. Values keep their
      case; quoted-strings are unquoted and their backslash escapes removed, so commas and ``=`` inside quotes
      are data.
    - A token68 (``Negotiate YIIC...==``) is returned under the key ``""`` (:data:`TOKEN68`).
    - A repeated parameter keeps its first value (RFC 9110: each name occurs once per challenge).
    - The parser is lenient and never raises: malformed pieces are skipped up to the next comma. It is used on
      responses from arbitrary servers.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    s = value
    n = len(s)
    i = 0
    params: dict[str, str] | None = None  # the current challenge's params, None before the first challenge
    while i < n:
        i = _skip_ws(s, i)
        if i >= n:
            break
        if s[i] == ",":
            i += 1
            continue
        if params is not None and _starts_param(s, i):
            # auth-param of the current challenge
            j = _read_token(s, i)
            name = s[i:j].lower()
            i = _skip_ws(s, j) + 1  # past "="
            i = _skip_ws(s, i)
            if i < n and s[i] == '"':
                val, i = _read_quoted(s, i)
            else:
                j = _read_token(s, i)
                val = s[i:j]
                i = j
            params.setdefault(name, val)
            i = _skip_ws(s, i)
            if i < n and s[i] != ",":
                i = _skip_to_comma(s, i)  # junk after a value
            continue
        j = _read_token(s, i)
        if j == i:  # not a scheme: junk
            i = _skip_to_comma(s, i)
            continue
        params = {}
        challenges.append((s[i:j].lower(), params))
        i = j
        if i < n and s[i] not in _WS and s[i] != ",":
            # scheme glued to something that is not whitespace ("Bearer=x"): junk, drop the challenge's body
            i = _skip_to_comma(s, i)
            continue
        i = _skip_ws(s, i)
        end = _token68_end(s, i) if i < n and s[i] != "," else -1
        if end >= 0:  # "Negotiate abc==": the whole body is one token68 (an auth-param has a value after "=")
            params[TOKEN68] = s[i:end]
            i = end
        # otherwise auth-params follow (read by the loop above) or a new challenge starts
    return challenges


def bearer_error(value: str | None) -> str | None:
    """The ``error`` attribute of the first ``Bearer`` challenge in a ``WWW-Authenticate`` value (C12), if any."""
    if not value:
        return None
    for scheme, params in parse_www_authenticate(value):
        if scheme == "bearer":
            return params.get("error")
    return None


def is_invalid_token(status_code: int, www_authenticate: str | None) -> bool:
    """True for the one response a handler renews and retries on (C12, RFC 6750 §3.1): a ``401`` with a
    ``Bearer`` challenge whose ``error`` is ``invalid_token``.

    Everything else is the caller's business: ``401`` without ``error`` (the request lacked credentials, §3.1),
    ``invalid_request`` (400), ``insufficient_scope`` (403: a new token with the same scope would not help).
    """
    return status_code == 401 and bearer_error(www_authenticate) == "invalid_token"
