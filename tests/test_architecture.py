"""The rooms' import rules (ARCHITECTURE.md), checked on the code itself.

- ``resolvers/`` has no import cycle: every ``import`` counts, the ones inside functions
  too. Types that link back up (``Customer.orders``, ``Order.exceptions``) are named
  (``strawberry.lazy``, ``resolvers.lazy.schema_type``), not imported.
- Who may import whom: ``sources/`` imports no other room; ``resolvers/`` only
  ``sources/``; ``gateway/`` ``resolvers/`` and ``sources/``; nothing imports ``bench/``
  (the harness measures the gateway from outside; it may import any room).
- Every module of ``resolvers/`` imports on its own, in a fresh interpreter: none relies
  on another having been imported first.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("gateway", "resolvers", "sources", "bench")
# room -> the other rooms it may import
MAY_IMPORT = {
    "sources": set(),
    "resolvers": {"sources"},
    "gateway": {"resolvers", "sources"},
    "bench": {"gateway", "resolvers", "sources"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if "node_modules" not in path.parts:
                out[_module_name(path)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            named.add(module)
            named.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import x`
    found = set()
    for target in named:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph_here() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


_GRAPH: list[dict[str, set[str]]] = []


def _graph() -> dict[str, set[str]]:
    """The import graph, parsed in a fresh interpreter (once per test run): CPython 3.11.7's
    ``ast.parse`` can fail with "AST constructor recursion depth mismatch" in a process
    whose earlier tests left deep asyncio stacks behind."""
    if not _GRAPH:
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from tests.test_architecture import _graph_here; "
            "print(json.dumps({k: sorted(v) for k, v in _graph_here().items()}))"
        )
        run = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        _GRAPH.append({k: set(v) for k, v in json.loads(run.stdout).items()})
    return _GRAPH[0]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_counts_imports_inside_functions(tmp_path: Path) -> None:
    # The checker itself: a cycle closed only by an import inside a function is a cycle.
    probe = tmp_path / "types.py"
    probe.write_text("import strawberry\n\n\ndef orders():\n    from .query import list_orders\n")
    known = {"resolvers.types", "resolvers.query"}
    assert _imports("resolvers.types", probe, known) == {"resolvers.query"}
    cycle = _cycle({"resolvers.types": {"resolvers.query"}, "resolvers.query": {"resolvers.types"}})
    assert cycle == ["resolvers.query", "resolvers.types", "resolvers.query"]
    assert _cycle({"resolvers.types": set(), "resolvers.query": {"resolvers.types"}}) is None


def test_resolvers_have_no_import_cycle() -> None:
    graph = _graph()
    resolvers = {m: {d for d in deps if d.startswith("resolvers.")} for m, deps in graph.items() if m.startswith("resolvers.")}
    assert _cycle(resolvers) is None, "import cycle in resolvers/: " + " -> ".join(_cycle(resolvers) or [])


def test_each_room_imports_only_the_rooms_below_it() -> None:
    wrong = [
        f"{module} imports {dep}"
        for module, deps in sorted(_graph().items())
        for dep in sorted(deps)
        if (a := module.split(".")[0]) != (b := dep.split(".")[0]) and b not in MAY_IMPORT[a]
    ]
    assert not wrong, "\n".join(wrong)


def test_cache_namespaces_come_from_sources_not_the_loaders() -> None:
    graph = _graph()
    event_path = ["gateway.ingress", "gateway.processor", "gateway.invalidation", "gateway.mapping", "gateway.order_index", "gateway.cache"]
    assert not [m for m in event_path if "resolvers.loaders" in graph[m]]
    assert graph["sources.namespaces"] == set()


def test_every_resolvers_module_imports_on_its_own() -> None:
    names = sorted(m for m in _modules() if m.startswith("resolvers."))
    # One interpreter, but before each import every module of the project is forgotten, so
    # each starts from nothing of ours (third-party libraries stay loaded: it is quick).
    script = (
        "import importlib, json, sys, traceback\n"
        "failed = {}\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m.split('.')[0] in ('gateway', 'resolvers', 'sources', 'bench')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=3)\n"
        "print(json.dumps(failed))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    failed = json.loads(run.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n".join(f"{k}:\n{v}" for k, v in failed.items())


def test_field_name_lists_name_fields_of_the_schema() -> None:
    from graphql import GraphQLObjectType

    from resolvers.fields import CROSS_SOURCE_FIELDS, ITEM_CROSS_SOURCE_FIELDS, UNCACHEABLE_FIELDS
    from resolvers.schema import schema

    types = schema._schema.type_map
    every = {f for t in types.values() if isinstance(t, GraphQLObjectType) for f in t.fields}
    assert UNCACHEABLE_FIELDS <= every, UNCACHEABLE_FIELDS - every
    assert CROSS_SOURCE_FIELDS <= set(types["Order"].fields), CROSS_SOURCE_FIELDS - set(types["Order"].fields)
    assert ITEM_CROSS_SOURCE_FIELDS <= set(types["OrderItem"].fields)


@pytest.mark.parametrize("argv", [["bench", "--help"], ["bench", "--no-such-option"]])
def test_ordergraph_bench_runs_the_harness_in_its_own_process(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from gateway.cli import main\n"
        f"rc = main({argv!r})\n"
        "leaked = sorted(m for m in sys.modules if m == 'bench' or m.startswith('bench.'))\n"
        "print('LEAKED', leaked)\n"
        "sys.exit(rc)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "LEAKED []" in run.stdout  # the gateway's process never imported the harness
    if "--help" in argv:
        assert run.returncode == 0, run.stderr[-2000:]
        assert "usage: python -m bench" in run.stdout and "--quick" in run.stdout
    else:
        assert run.returncode == 2
        assert "unrecognized arguments: --no-such-option" in run.stderr
