"""The boundary: outside server/compat, postwire touches no other project's internals.

Walks the source of the product (services/api/server), the load tester, the local stack and the
benchmark, and fails naming the line of any of:
- an import of the servers (Daphne, autobahn, Twisted): postwire speaks ASGI to them;
- a private name (`_x`) imported from another project, or read as an attribute where postwire
  itself defines no such name;
- a name a compat module lists among the internals it uses (INTERNALS there);
- an assignment to an attribute of another project's module or class (a monkeypatch).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import server.compat

REPO = Path(__file__).resolve().parents[3]
COMPAT = REPO / "services" / "api" / "server" / "compat"
SCANNED = [
    REPO / "services" / "api" / "server",
    REPO / "services" / "api" / "bin",
    REPO / "services" / "loadtest" / "postwire_loadtest",
    REPO / "devstack",
    REPO / "bench",
]
OURS = {"server", "devstack", "bench", "postwire_loadtest", "tests"}
SERVERS = {"daphne", "autobahn", "twisted"}
# Names that look private but are documented API, or Python's own.
ALLOWED = {
    "_meta": "Django's Model _meta API (docs: ref/models/meta)",
    "_state": "Django's Model._state (docs: ref/models/instances, 'Model._state')",
    "_actions": "argparse (Python's standard library): the load tester's LOADTEST_* defaults",
    "_StoreTrueAction": "argparse (Python's standard library), as above",
}


def compat_internals() -> set[str]:
    names: set[str] = set()
    for module in pkgutil.iter_modules(server.compat.__path__):
        names |= set(getattr(importlib.import_module(f"server.compat.{module.name}"), "INTERNALS", ()))
    return names


def python_files(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            if "results" not in path.parts and "node_modules" not in path.parts:
                files.append(path)
    return files


def own_names(files: list[Path]) -> set[str]:
    """Every name postwire's own code defines: functions, classes, assigned names and attributes,
    __slots__ entries, keyword arguments of its own functions."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
                if not isinstance(node, ast.ClassDef):
                    names |= {a.arg for a in node.args.args + node.args.kwonlyargs}
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)  # __slots__ entries, getattr names
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
    return names


def _top(module: str | None) -> str:
    return (module or "").split(".")[0]


def violations(path: Path, source: str, own: set[str], internals: set[str]) -> list[str]:
    tree = ast.parse(source, str(path))
    found = []
    foreign_bindings: set[str] = set()  # names bound to another project's modules or classes
    where = path.relative_to(REPO) if path.is_absolute() and path.is_relative_to(REPO) else path
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _top(alias.name) in SERVERS:
                    found.append(f"{line}: imports {alias.name} (the servers' internals live in server/compat)")
                if _top(alias.name) not in OURS:
                    foreign_bindings.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if _top(node.module) in SERVERS:
                found.append(f"{line}: imports from {node.module} (the servers' internals live in server/compat)")
            if _top(node.module) not in OURS:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{line}: imports {node.module}.{alias.name}, a private name of another project")
                    foreign_bindings.add(alias.asname or alias.name)
        elif isinstance(node, ast.Attribute):
            name = node.attr
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            if private and name not in own and name not in ALLOWED:
                found.append(f"{line}: .{name} is a private name of another project (move it to server/compat)")
            elif name in internals and name not in own:
                found.append(f"{line}: .{name} is an internal a compat module uses (go through server/compat)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                base = target
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(target, ast.Attribute) and isinstance(base, ast.Name) and base.id in foreign_bindings:
                    found.append(
                        f"{where}:{node.lineno}: assigns {ast.unparse(target)}, an attribute of another "
                        "project's module or class (a monkeypatch: server/compat only)"
                    )
    return found


def test_nothing_outside_server_compat_reaches_into_another_project():
    files = python_files(SCANNED)
    own = own_names([f for f in files if COMPAT not in f.parents])
    internals = compat_internals()
    found = []
    for path in files:
        if COMPAT in path.parents:
            continue
        found += violations(path, path.read_text(), own, internals)
    assert found == [], "reach-ins outside server/compat:\n" + "\n".join(found)


def product_modules() -> list[str]:
    root = REPO / "services" / "api"
    names = []
    for path in python_files([root / "server"]):
        if COMPAT in path.parents or "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        names.append(module.removesuffix(".__init__"))
    return names


def test_no_class_of_postwire_overrides_a_private_method_of_another_project():
    """An override of `_name` is a copy of someone else's internals by another route."""
    found = []
    for name in product_modules():
        module = importlib.import_module(name)
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or not isinstance(cls := getattr(module, node.name, None), type):
                continue
            methods = [
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and item.name.startswith("_")
                and not item.name.startswith("__")
            ]
            foreign = [
                base
                for base in cls.__mro__[1:]
                if _top(base.__module__) not in OURS | set(sys.stdlib_module_names) | {"builtins"}
            ]
            for method in methods:
                owners = [base for base in foreign if method in vars(base)]
                if owners:
                    found.append(
                        f"{name}.{cls.__name__}.{method} overrides {owners[0].__module__}.{owners[0].__qualname__}"
                    )
    assert found == [], "private methods of other projects overridden outside server/compat:\n" + "\n".join(found)


def test_the_walk_finds_each_kind_of_reach_in():
    """The checker itself, on a source that does everything it must refuse (so a pass above
    means something)."""
    bad = """
import twisted.internet.reactor
from daphne.server import Server
from channels_redis.core import _private_helper
import autobahn.websocket.protocol as proto
from channels.layers import get_channel_layer

layer = get_channel_layer()
key = layer._group_key("g")
queue = protocol.application_queue
proto.pformat = str
Server.create_application = None
"""
    found = violations(Path("bad.py"), bad, own={"key", "queue", "layer"}, internals={"application_queue"})
    kinds = [
        "imports twisted.internet.reactor",
        "imports from daphne.server",
        "imports channels_redis.core._private_helper",
        "imports autobahn.websocket.protocol",
        "._group_key is a private name",
        ".application_queue is an internal",
        "assigns proto.pformat",
        "assigns Server.create_application",
    ]
    for kind in kinds:
        assert any(kind in line for line in found), (kind, found)


def test_every_compat_module_says_what_it_was_checked_against_and_what_it_uses():
    for module in pkgutil.iter_modules(server.compat.__path__):
        if module.name == "checks":
            continue
        compat = importlib.import_module(f"server.compat.{module.name}")
        doc = compat.__doc__ or ""
        assert "Checked against:" in doc and "Names used:" in doc, module.name
        assert compat.CHECKED and compat.PACKAGE, module.name
        assert isinstance(compat.SOURCES, dict) and isinstance(compat.INTERNALS, tuple), module.name
