"""The package's layout holds: imports point down only, and there is no import circle.

Layers, bottom up (docs/architecture.md draws them):

0. ``errors``, ``_validate``: depend on nothing of the package;
1. ``keys``, ``serializers``, ``singleflight``, ``_telemetry``: the other basics, no Redis;
2. ``_redis``: the one door to Redis;
3. the patterns, ``cache``, ``lock``, ``ratelimit``, ``leaderboard``, ``idempotency``: each in
   its own folder, none importing another;
4. ``integrations``;
5. the package's ``__init__``, re-exports only.

A module may import its own folder's modules and anything in a lower layer.
Every import counts, ``if TYPE_CHECKING:`` ones and those inside functions
included: the graph is read from the source, not from what ran.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import aiocache_patterns

PACKAGE = Path(aiocache_patterns.__file__).parent
LAYERS = {
    "errors": 0,
    "_validate": 0,
    "keys": 1,
    "serializers": 1,
    "singleflight": 1,
    "_telemetry": 1,
    "_redis": 2,
    "cache": 3,
    "lock": 3,
    "ratelimit": 3,
    "leaderboard": 3,
    "idempotency": 3,
    "integrations": 4,
}


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = ["aiocache_patterns", *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """``(importer, imported)`` for every import of a package module, anywhere."""
    edges = set()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    edges.add((name, child if child in modules else target))
            elif isinstance(node, ast.Import):
                edges.update((name, alias.name) for alias in node.names)
    return {(a, b) for a, b in edges if b.startswith("aiocache_patterns") and a != b}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) == 1:
        return "aiocache_patterns", 5
    return parts[1], LAYERS[parts[1]]


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)  # a KeyError names a module outside the layers


def _upward(edges: set[tuple[str, str]]) -> list[str]:
    wrong = []
    for importer, imported in sorted(edges):
        (folder, level), (target, target_level) = _layer(importer), _layer(imported)
        if folder != target and target_level >= level:
            wrong.append(f"{importer} -> {imported}")
    return wrong


def _circles(edges: set[tuple[str, str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported in edges:
        graph[importer].add(imported)
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return circles


def test_imports_point_down_only() -> None:
    edges = _imports(_modules())
    assert len(edges) > 50  # the walk found the imports
    assert _upward(edges) == []


def test_there_is_no_import_circle() -> None:
    assert _circles(_imports(_modules())) == []


def test_the_checks_catch_a_type_only_circle_and_an_upward_import(tmp_path: Path) -> None:
    """What the checks above would say of a package with the old faults."""
    (tmp_path / "ratelimit").mkdir()
    (tmp_path / "ratelimit" / "__init__.py").write_text("")
    (tmp_path / "ratelimit" / "_limiter.py").write_text("from ..errors import X\n")
    (tmp_path / "errors.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .ratelimit._limiter import RateLimitResult\n"
    )
    edges = _imports(_modules(tmp_path))
    assert _upward(edges) == ["aiocache_patterns.errors -> aiocache_patterns.ratelimit._limiter"]
    assert _circles(edges) == [
        [
            "aiocache_patterns.errors",
            "aiocache_patterns.ratelimit._limiter",
            "aiocache_patterns.errors",
        ]
    ]


def test_every_script_lives_beside_its_python() -> None:
    """No Lua outside a pattern's ``lua/`` folder, and every such folder has a user."""
    for lua in PACKAGE.rglob("*.lua"):
        folder = lua.parent
        assert folder.name == "lua", lua
        assert (folder.parent / "__init__.py").exists(), lua
        sources = " ".join(p.read_text() for p in folder.parent.glob("*.py"))
        assert "load_script(__package__" in sources, folder
