"""The module graph of ``appliance/`` as its import statements draw it: no cycles, and the pure
modules never load the C binding.

Every import counts, the ones inside functions too: a deferred import still ties two modules
together, and the cycles this test guards against (oauth and smtp, web/auth and web/tls) were
deferred ones; so does the package file each import runs first.  Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "appliance"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for inner in node.body:
                skipped.update(id(n) for n in ast.walk(inner))
    return skipped


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module a dotted name lives in (``appliance.a.b.func`` -> ``appliance.a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (what ``from X import y`` names, when y is a
    module), with the packages above each: importing ``a.b.c`` runs ``a/b/__init__.py`` first."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _type_checking_only(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name, known) if alias.name.split(".")[0] == PACKAGE else None
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                target = f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else _owner(module, known)
                if target:
                    out.add(target)
    for target in list(out):
        parent = target.rpartition(".")[0]
        while parent:
            out.add(parent)
            parent = parent.rpartition(".")[0]
    out.discard(name)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as the path a -> b -> ... -> a, or None (depth-first, colouring nodes)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE:
            found = visit(start)
            if found:
                return found
    return None


def reaches(graph: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """The import path from ``start`` to ``target`` (or to a module inside it), or None."""
    seen = {start}
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == target or nxt.startswith(target + "."):
                return path + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])
    return None


def test_no_import_cycle_inside_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


#: modules that decide or render without the C binding, and must load without it
PURE = ["appliance.fax.t30codes", "appliance.delivery.message", "appliance.routing.um", "appliance.spool.stats"]


def test_the_pure_modules_never_load_the_spandsp_binding() -> None:
    graph = import_graph()
    sip_core = sorted(m for m in graph if m.startswith("appliance.sip.") and m != "appliance.sip.transport")
    assert sip_core, "the SIP core moved: name its modules here"
    for name in PURE + sip_core:
        assert name in graph, name
        path = reaches(graph, name, "appliance.spandsp")
        assert path is None, f"{name} loads the C binding: " + " -> ".join(path or [])


# -- the checks check: a cycle and a reach into the binding are found where they exist ----------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_deferred_import_cycle_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "delivery/__init__.py": "",
        "delivery/smtp.py": "def f():\n    from appliance.delivery import oauth\n",
        "delivery/oauth.py": "from appliance.delivery.smtp import f\n",
        "fax/__init__.py": "",
        "fax/codes.py": "from . import helper\n",
        "fax/helper.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .codes import X\n",
    })
    graph = import_graph(root)
    assert graph["appliance.fax.helper"] == set()  # a type-only import is no edge
    assert graph["appliance.fax.codes"] == {"appliance", "appliance.fax", "appliance.fax.helper"}  # a relative one is
    assert find_cycle(graph) == ["appliance.delivery.oauth", "appliance.delivery.smtp", "appliance.delivery.oauth"]


def test_a_package_file_that_imports_its_modules_is_a_cycle(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "web/__init__.py": "from appliance.web.app import create_app\n",
        "web/app.py": "from appliance.web import pages\n",
        "web/pages.py": "",
    })
    assert find_cycle(import_graph(root)) == ["appliance.web", "appliance.web.app", "appliance.web"]


def test_a_path_into_the_binding_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "spandsp/__init__.py": "",
        "spandsp/t30.py": "",
        "delivery/__init__.py": "",
        "delivery/message.py": "import appliance.delivery.stats\n",
        "delivery/stats.py": "def f():\n    from ..spandsp.t30 import OK\n",
    })
    graph = import_graph(root)
    assert find_cycle(graph) is None
    assert reaches(graph, "appliance.delivery.message", "appliance.spandsp")[:2] == [
        "appliance.delivery.message", "appliance.delivery.stats"]


# -- one logger tree ------------------------------------------------------------------------------------
def logger_names(path: Path) -> list[object]:
    """What each ``logging.getLogger(...)`` call in a module names: a string, or the expression's
    source when it is not a literal (``__name__``); the root logger (no argument) is left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[object] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
                and node.args):
            arg = node.args[0]
            names.append(arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg))
    return names


def stray_loggers(root: Path = ROOT) -> list[str]:
    """Loggers outside the one tree: every name is ``faxbridge.<area>[.<part>]``."""
    stray = []
    for name, path in modules(root).items():
        for logger in logger_names(path):
            if not (isinstance(logger, str) and re.fullmatch(r"faxbridge(\.[a-z0-9_]+)+", logger)):
                stray.append(f"{name}: {logger}")
    return stray


def test_every_logger_is_in_the_faxbridge_tree() -> None:
    assert stray_loggers() == []


def test_a_stray_logger_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "import logging\nlog = logging.getLogger(__name__)\nroot = logging.getLogger()\n",
        "b.py": "import logging\nlog = logging.getLogger('appliance.sip')\nok = logging.getLogger('faxbridge.sip')\n",
        "c.py": "import logging\nlog = logging.getLogger('faxbridge')\n",
    })
    assert stray_loggers(root) == ["appliance.a: __name__", "appliance.b: appliance.sip", "appliance.c: faxbridge"]
