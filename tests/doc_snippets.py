"""The Python snippets of README.md and docs/dpop.md, and a static check that they use tokensmith's public API as it
is: every module they import is public (no ``tokensmith._…``) and imports, every name they take from tokensmith
exists, and every call of a tokensmith function, class or method binds to its real signature (a misspelt keyword
fails). Calls are followed through the names a snippet binds: ``client = tokensmith.TokenClient.from_issuer(...)``
makes ``client.get_token(...)`` a call of ``TokenClient.get_token``."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/dpop.md")
#: Constructors that return an instance of the class they are called on.
_FACTORIES = ("from_", "for_", "generate", "signed")


@dataclass(frozen=True)
class Snippet:
    doc: str
    heading: str  # the nearest ``##``/``###`` heading above it
    index: int  # its position among the Python snippets under that heading, from 0
    code: str
    line: int

    @property
    def key(self) -> str:
        return f"{self.doc} § {self.heading} #{self.index}"


def snippets(doc: str) -> list[Snippet]:
    text = (ROOT / doc).read_text()
    found: list[Snippet] = []
    counts: dict[str, int] = {}
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        before = text[: match.start()]
        prose = re.sub(r"^```.*?^```", "", before, flags=re.S | re.M)  # a "# comment" in code is no heading
        headings = re.findall(r"^#{1,3} (.+)$", prose, flags=re.M)
        heading = headings[-1] if headings else ""
        index = counts.get(heading, 0)
        counts[heading] = index + 1
        found.append(Snippet(doc, heading, index, match.group(1), before.count("\n") + 2))
    return found


def all_snippets() -> list[Snippet]:
    return [s for doc in DOCS for s in snippets(doc)]


@dataclass(frozen=True)
class _Instance:
    cls: type


class ApiMismatch(AssertionError):
    pass


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where
        self.names: dict[str, Any] = {}

    def fail(self, node: ast.AST, message: str) -> ApiMismatch:
        return ApiMismatch(f"{self.where}, snippet line {getattr(node, 'lineno', '?')}: {message}")

    def import_module(self, node: ast.AST, name: str) -> Any:
        if any(part.startswith("_") for part in name.split(".")):
            raise self.fail(node, f"imports the private module {name}")
        try:
            return importlib.import_module(name)
        except ImportError as error:
            raise self.fail(node, f"cannot import {name}: {error}") from None

    def run(self, code: str) -> None:
        tree = ast.parse(code)
        for node in ast.walk(tree):  # imports first, wherever they are
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "tokensmith":
                        module = self.import_module(node, alias.name)
                        # ``import a.b`` binds ``a``; ``import a.b as c`` binds ``c`` to ``a.b``.
                        self.names[alias.asname or "tokensmith"] = module if alias.asname else self.names_root()
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tokensmith":
                module = self.import_module(node, node.module or "")
                for alias in node.names:
                    if alias.name.startswith("_"):
                        raise self.fail(node, f"imports the private name {alias.name}")
                    if not hasattr(module, alias.name):
                        try:
                            value = self.import_module(node, f"{node.module}.{alias.name}")
                        except ApiMismatch:
                            raise self.fail(node, f"{node.module} has no {alias.name}") from None
                    else:
                        value = getattr(module, alias.name)
                    self.names[alias.asname or alias.name] = value
        self.block(tree.body)

    @staticmethod
    def names_root() -> Any:
        return importlib.import_module("tokensmith")

    def block(self, body: list[ast.stmt]) -> None:
        for statement in body:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign):
            value = self.expr(node.value)
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.names[target.id] = value
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                value = self.expr(item.context_expr)
                if isinstance(item.optional_vars, ast.Name):
                    self.names[item.optional_vars.id] = value
            self.block(node.body)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.block(node.body)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self.statement(child)
                elif isinstance(child, ast.expr):
                    self.expr(child)

    def expr(self, node: ast.expr) -> Any:
        """What ``node`` is when that is known (a tokensmith object or an ``_Instance``), else None."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self.expr(node.value)
            if owner is None:
                return None
            if isinstance(owner, _Instance):
                return getattr(owner.cls, node.attr, None)  # instance attributes are not known statically
            if inspect.ismodule(owner) and owner.__name__.split(".")[0] == "tokensmith":
                if node.attr.startswith("_"):
                    raise self.fail(node, f"uses the private name {owner.__name__}.{node.attr}")
                if owner.__name__ == "tokensmith" and node.attr not in owner.__all__:
                    try:
                        return self.import_module(node, f"tokensmith.{node.attr}")
                    except ApiMismatch:
                        raise self.fail(node, f"tokensmith has no public {node.attr}") from None
            if not hasattr(owner, node.attr):
                raise self.fail(node, f"{getattr(owner, '__qualname__', owner)!s} has no attribute {node.attr}")
            return getattr(owner, node.attr)
        if isinstance(node, ast.Await):
            return self.expr(node.value)
        if isinstance(node, ast.Call):
            return self.call(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child)
        return None

    def call(self, node: ast.Call) -> Any:
        callee = self.expr(node.func)
        if isinstance(node.func, ast.Attribute) and callee is None:
            owner = self.expr(node.func.value)
            if isinstance(owner, _Instance):  # a method is a class attribute
                raise self.fail(node, f"{owner.cls.__name__} has no method {node.func.attr}")
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            self.expr(arg)
        if callee is None or not _is_tokensmith(callee):
            return None
        self.bind(node, callee)
        if inspect.isclass(callee):
            return _Instance(callee)
        owner = getattr(callee, "__self__", None)
        if inspect.isclass(owner) and callee.__name__.startswith(_FACTORIES):
            return _Instance(owner)
        return None

    def bind(self, node: ast.Call, callee: Any) -> None:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return
        try:
            signature = inspect.signature(callee)
        except (TypeError, ValueError):
            return
        keywords = {k.arg: None for k in node.keywords if k.arg is not None}
        params = list(signature.parameters.values())
        if params and params[0].name == "self" and not inspect.ismethod(callee):
            params = params[1:]  # a method looked up on the class, called on an instance
        signature = signature.replace(parameters=params)
        try:
            bound = signature.bind(*([None] * len(node.args)), **keywords)
        except TypeError as error:
            raise self.fail(node, f"{callee.__qualname__}{signature}: {error}") from None
        extra = next((p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        owner = getattr(callee, "__self__", None)
        if extra is not None and inspect.isclass(owner) and bound.arguments.get(extra.name):
            init = inspect.signature(owner.__init__)  # a factory forwards its **kwargs to the constructor
            accepted = set(init.parameters)
            unknown = sorted(set(bound.arguments[extra.name]) - accepted)
            if unknown:
                raise self.fail(node, f"{callee.__qualname__}: {owner.__name__}() takes no {', '.join(unknown)}")


def _is_tokensmith(value: Any) -> bool:
    module = getattr(value, "__module__", None) or ""
    return module.split(".")[0] == "tokensmith"


def check(snippet_code: str, where: str = "snippet") -> None:
    """Raise :class:`ApiMismatch` when the code uses tokensmith other than as its public API allows."""
    _Checker(where).run(snippet_code)
