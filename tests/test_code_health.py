"""Code health: no module of ``paperlib`` reads another module's private members.

A name with one leading underscore (``_name``, not ``__dunder__``) is private to the module that
defines it. A module may use its own privates freely (``self._x``, ``cls._x``, ``super()._x``,
``other._x`` where ``_x`` is defined in this module), but it must not reach into an object or
module defined elsewhere (``op._propagators``, ``torch._foreach_lerp_``, ``getattr(op, "_crop")``)
nor import a private name (``from .x import _y``). Importing a private *module* of the package
(``from . import _run_notebook``) is package-internal and allowed.

The checker is a small AST walk; the tests below first pin what it flags and what it does not on
tiny sources, then run it over every file of ``paperlib/`` and print each offence as
``file:line``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import paperlib

PACKAGE = Path(paperlib.__file__).resolve().parent

#: documented public API of ``collections.namedtuple`` that carries an underscore
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """Private names this module defines: top-level and class-body definitions, ``self._x`` /
    ``cls._x`` assignment targets and ``__slots__`` entries."""
    names: set[str] = set()

    def targets(node: ast.AST) -> list[ast.AST]:
        if isinstance(node, ast.Assign):
            return list(node.targets)
        if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            return [node.target]
        return []

    def add_target(t: ast.AST) -> None:
        if isinstance(t, ast.Name):
            names.add(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for elt in t.elts:
                add_target(elt)

    def scan_body(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(stmt.name)
            for t in targets(stmt):
                add_target(t)
            if isinstance(stmt, ast.ClassDef):
                scan_body(stmt.body)
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                                    for t in stmt.targets):
                for const in ast.walk(stmt.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        names.add(const.value)

    scan_body(tree.body)
    for node in ast.walk(tree):
        for t in targets(node):
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and _is_self(sub.value):
                    names.add(sub.attr)
    return {n for n in names if _is_private(n)}


def _is_self(node: ast.AST) -> bool:
    """``self``, ``cls`` or ``super()``: access to the object's own (possibly inherited) members."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _imported_names(tree: ast.Module) -> set[str]:
    """Local names bound by any import: modules, classes and functions defined elsewhere, whose
    private members are never this module's, even where it defines a private of the same name."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            bound.update(alias.asname or alias.name for alias in node.names)
    return bound


def private_access_violations(source: str, filename: str = "<string>",
                              package_modules: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """``(line, description)`` for every private member of another module that ``source`` reads.

    ``package_modules``: names of private *modules* of the package (``_run_notebook``), whose
    import is allowed.
    """
    tree = ast.parse(source, filename=filename)
    own = _own_names(tree)
    imported = _imported_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _is_private(alias.name) and alias.name not in package_modules:
                    found.append((node.lineno, f"imports private name {alias.name!r} from "
                                               f"{'.' * node.level}{node.module or ''}"))
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_self(node.value):
            foreign_module = isinstance(node.value, ast.Name) and node.value.id in imported
            if (foreign_module or node.attr not in own) and node.attr not in NAMEDTUPLE_API:
                found.append((node.lineno, f"reads private member {ast.unparse(node)!r}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value) and not _is_self(node.args[0])
              and node.args[1].value not in own):
            found.append((node.lineno, f"reads private member via {ast.unparse(node)!r}"))
    return sorted(set(found))


def _private_package_modules() -> frozenset[str]:
    return frozenset(p.stem if p.is_file() else p.name for p in PACKAGE.rglob("_*")
                     if _is_private(p.stem) and (p.suffix == ".py" or (p / "__init__.py").is_file()))


# --- the checker on tiny sources: what it must flag and what it must not -----------------------

def _lines(source: str) -> list[int]:
    return [line for line, _ in private_access_violations(source)]


def test_flags_foreign_private_attribute_and_module_member():
    src = ("from ..physics import multislice\n"
           "def f(op):\n"
           "    return op._propagators\n"
           "x = multislice._helper()\n")
    assert _lines(src) == [3, 4]


def test_flags_private_import_and_getattr_string():
    src = ("from .stem import _three_pie\n"
           "def f(op):\n"
           "    return getattr(op, '_crop')\n")
    assert _lines(src) == [1, 3]


def test_flags_module_member_even_when_same_name_is_defined_here():
    # ``torch._helper`` is torch's, whatever this module calls its own helper
    src = ("import torch\n"
           "def _helper():\n"
           "    return torch._helper()\n")
    assert _lines(src) == [3]


def test_does_not_flag_own_privates():
    src = ("import collections\n"
           "class A:\n"
           "    _cache = {}\n"
           "    __slots__ = ('_slot',)\n"
           "    def __init__(self):\n"
           "        self._x = 1\n"
           "    def _m(self):\n"
           "        return self._x + cls_method(self)\n"
           "    def __eq__(self, other):\n"
           "        return self._x == other._x and other._slot and type(self)._cache is not None\n"
           "    @classmethod\n"
           "    def make(cls):\n"
           "        return cls._cache\n"
           "class B(A):\n"
           "    def _m(self):\n"
           "        return super()._m() + self._inherited + self.__class__.__name__.__len__()\n"
           "def _helper(a):\n"
           "    return a._m() + A._cache.__len__()\n"
           "P = collections.namedtuple('P', 'x')\n"
           "q = P(1)._replace(x=2)._asdict()\n")
    assert _lines(src) == []


def test_private_module_import_is_allowed_only_for_package_modules():
    src = "from . import _run_notebook\n"
    assert private_access_violations(src, package_modules=frozenset({"_run_notebook"})) == []
    assert [line for line, _ in private_access_violations(src)] == [1]


# --- the package ---------------------------------------------------------------------------------

def test_no_module_reads_another_modules_private_members():
    package_modules = _private_package_modules()
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        for line, what in private_access_violations(path.read_text(), str(rel), package_modules):
            offences.append(f"{rel}:{line}: {what}")
    if offences:
        pytest.fail(f"{len(offences)} reads of another module's private members:\n" + "\n".join(offences),
                    pytrace=False)
