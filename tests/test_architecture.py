"""The architecture: imports go downhill (no circle, no function-level kpose import to dodge
one), PoseModel loads no training/quantisation/deployment code, every recipe's family is
registered with a task and declared outputs."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kpose"
# Entry points that import lazily on purpose: `import kpose` and `kpose --help` stay fast.
LAZY_ENTRY_POINTS = {"kpose", "kpose.cli_commands"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(kpose modules imported at module level, function-level kpose imports as 'line: module')."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kpose"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("kpose")]
        else:
            continue
        if not names:
            continue
        p, in_function = parents.get(node), False
        while p is not None:
            if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function = True
            p = parents.get(p)
        if in_function:
            nested.append(f"{node.lineno}: {names[0]}")
        else:
            top.update(names)
    return top, nested


def _graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph, nested = {}, {}
    for name, path in files.items():
        top, inner = _imports(path)
        graph[name] = {m for m in top if m in files and m != name}
        # A package's own __init__ imported by a submodule is not an edge of the flow.
        graph[name] -= {m for m in graph[name] if name.startswith(m + ".")}
        if inner:
            nested[name] = inner
    return graph, nested


def test_no_function_level_kpose_imports():
    _, nested = _graph()
    offenders = {m: v for m, v in nested.items() if m not in LAZY_ENTRY_POINTS}
    assert not offenders, f"function-level kpose imports (restructure instead): {offenders}"


def test_no_import_cycle():
    graph, _ = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_pose_model_loads_no_training_quantisation_or_deployment():
    code = ("import sys, kpose.pose_model; "
            "bad = [m for m in sys.modules if m.startswith(('kpose.training', 'kpose.deploy', "
            "'kpose.models.quantize', 'tensorflow_model_optimization', 'kpose.evaluation'))]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
