"""The package's import graph: no cycle, and imports point one way across the declared layers.

The graph is read from the source with ``ast`` (relative and absolute imports of the package, also those inside
functions; ``cli``'s verb table counts as imports of the verb modules), so it needs no import of the package.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

PACKAGE = "malpyeong_grpo"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Bottom to top: a module may import from its own layer and the layers below it, never from a layer above.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "core",
        {"files", "data", "text", "answer", "prompts", "models", "shapes", "lm", "shots", "repair", "rules", "flags"}
        | {"tables"},
    ),
    ("scoring", {"e5", "bleurt", "rouge", "embedding_cache", "metrics"}),
    ("rag", {"query", "retrievers", "learned", "retrieval", "contexts", "labels"}),
    ("inference", {"generation", "predict_options", "predict", "baseline"}),
    (
        "training",
        {"rewards", "configs", "trl_compat", "speed", "profiler", "trainer", "selection", "train", "sft", "plan"},
    ),
    ("reports", {"evaluate", "retrieval_report", "score_cli", "demo_progress", "demo_report", "demo"}),
    ("cli", {"cli"}),
]


def _module_names(root: Path) -> dict[str, Path]:
    """Dotted module name (relative to the package, '' for the package itself) -> file."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(target: list[str], modules: Mapping[str, Path]) -> str | None:
    """The module a dotted target names: the longest prefix that is a module of the package."""
    for n in range(len(target), -1, -1):
        name = ".".join(target[:n])
        if name in modules:
            return name
    return None


def _verb_modules(tree: ast.Module) -> set[str]:
    """The modules named in a ``VERBS = {verb: (module, function, help)}`` table (cli's dynamic imports)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == "VERBS" for t in targets) and isinstance(node.value, ast.Dict):
            for v in node.value.values:
                if isinstance(v, ast.Tuple) and v.elts and isinstance(v.elts[0], ast.Constant):
                    out.add(str(v.elts[0].value))
    return out


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the package modules it imports (the package ``__init__`` itself left out)."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if not name:
            continue
        is_pkg = path.name == "__init__.py"
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        deps: set[str | None] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # from .x import y, from .. import z
                    base = package[: len(package) - node.level + 1]
                    target = base + (node.module.split(".") if node.module else [])
                elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                    target = node.module.split(".")[1:]  # from malpyeong_grpo.x import y
                else:
                    continue
                deps |= {_resolve(target + [a.name], modules) for a in node.names}
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(PACKAGE + "."):
                        deps.add(_resolve(a.name.split(".")[1:], modules))
        deps |= {_resolve(m.split("."), modules) for m in _verb_modules(tree)}
        graph[name] = {d for d in deps if d and d != name}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as its modules in import order (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer_problems(graph: Mapping[str, set[str]], layers: Sequence[tuple[str, set[str]]]) -> list[str]:
    """Modules in no layer (or in two), and imports from a layer above the importer's."""
    rank: dict[str, int] = {}
    problems = []
    for n, (_, members) in enumerate(layers):
        for m in members:
            if m in rank:
                problems.append(f"{m} is declared in two layers")
            rank[m] = n

    def rank_of(module: str) -> int | None:
        return rank.get(module, rank.get(module.split(".")[0]))

    names = [name for name, _ in layers]
    for module in sorted(set(graph) | {d for deps in graph.values() for d in deps}):
        if rank_of(module) is None:
            problems.append(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")
    for module, deps in sorted(graph.items()):
        own = rank_of(module)
        for dep in sorted(deps):
            theirs = rank_of(dep)
            if own is not None and theirs is not None and theirs > own:
                problems.append(f"{module} ({names[own]}) imports {dep} ({names[theirs]}), a layer above it")
    return problems


# ------------------------------------------------------------------------------------------------------- the package


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert {"data", "retrieval", "contexts", "labels", "retrieval_report", "cli"} <= set(graph)
    assert "rules" in graph["contexts"]  # a top-level relative import
    assert "retrieval" in graph["labels"]  # an import inside a function
    assert "retrieval_report" in graph["cli"]  # the verb table


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down_the_layers():
    problems = layer_problems(import_graph(), LAYERS)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------------ the checker


def test_find_cycle_names_the_cycles_modules():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_layer_problems_catch_upward_imports_and_unplaced_modules():
    layers = [("low", {"a", "b"}), ("high", {"c"})]
    assert layer_problems({"a": {"b"}, "b": {"a"}, "c": {"a"}}, layers) == []
    assert layer_problems({"a": {"c"}, "c": set(), "b": set()}, layers) == [
        "a (low) imports c (high), a layer above it"
    ]
    assert layer_problems({"a": {"new"}}, layers) == [
        "new is in no layer: add it to LAYERS in tests/test_architecture.py"
    ]


def test_import_graph_reads_relative_absolute_and_function_level_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("X = 1\n")
    (pkg / "mid.py").write_text("def f():\n    from .high import Y\n    return Y\n")
    (pkg / "high.py").write_text(f"import json\nfrom . import low\nfrom {PACKAGE}.mid import f\nY = 2\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "deep.py").write_text("from ..low import X\nfrom .. import mid\n")
    graph = import_graph(pkg)
    assert graph == {"low": set(), "mid": {"high"}, "high": {"low", "mid"}, "sub": set(), "sub.deep": {"low", "mid"}}
    assert find_cycle(graph) == ["high", "mid", "high"]
