"""The package's layout is its architecture: folders are layers, imports only go down, no import cycles,
analysis and output never reach training, and no function is longer than a screen."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lrdecay_cli"
LAYERS = ["cli", "api", "experiments", "output", "analysis", "training", "rundir", "config", "schedules", "errors"]
"""From the top down: a module may import its own layer's modules and those of the layers below."""
NEVER = {"analysis": {"training", "experiments"}, "output": {"training", "experiments"}}
"""What reads run directories never trains (nor imports torch through training)."""
LONGEST_FUNCTION = 60


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text())
    return found


def imports(tree: ast.Module) -> set[str]:
    """The lrdecay_cli modules a module imports, anywhere in it (function-level imports too)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lrdecay_cli"):
            out |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.startswith("lrdecay_cli")}
    return out


def layer(module: str) -> str | None:
    name = module.split(".")[1] if module.count(".") else None
    return "cli" if name == "__main__" else name


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: {target for target in imports(tree) if target in found and target != name}
            for name, tree in found.items()}


def test_imports_only_go_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        if layer(module) not in LAYERS:
            continue
        for target in targets:
            if layer(target) in LAYERS and (LAYERS.index(layer(target)) < LAYERS.index(layer(module))
                                            or layer(target) in NEVER.get(layer(module), ())):
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    edges = {module: {t for t in targets if not module.startswith(t + ".")} for module, targets in graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_no_function_is_longer_than_a_screen():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines" for name, tree in modules().items()
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION]
    assert not long, long
