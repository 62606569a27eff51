"""The house plan holds in the code: sizes, one checkpoint reader, thin tools, imports that flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "brats"

#: Packages and modules in flow order: each may import only from earlier layers (docs/architecture.md).
LAYERS: list[set[str]] = [
    {"errors"},
    {"fs", "labels", "devices", "progress", "bias"},
    {"config", "preprocess", "resolution", "asymmetry", "data", "precision", "outputs"},
    {"checkpoint"},
    {"networks_monai"},
    {"networks"},
    {"synth", "extract"},
    {"train"},
    {"predict"},
    {"evaluate"},
    {"report", "demo_budget"},
    {"demo", "serve"},
    {"cli"},
]
#: The one allowed upward import: training's validation scores with the evaluation counts (one code path).
EXCEPTIONS = {("train", "brats.evaluate.metrics")}


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def _top(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]


def _layer(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_architecture.py (add it to the plan)")


def test_no_module_over_400_lines_and_no_function_over_80():
    long_files = [(p, n) for p in _modules() if (n := len(p.read_text().splitlines())) > 400]
    assert not long_files, long_files
    long_funcs = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > 80:
                    long_funcs.append((str(p.relative_to(ROOT)), node.name, n))
    assert not long_funcs, long_funcs


def test_stage_packages_exist():
    for name in ("synth", "extract", "train", "predict", "evaluate", "data", "config", "cli"):
        assert (PKG / name / "__init__.py").is_file(), name


def test_one_module_reads_checkpoints():
    readers = [p.relative_to(ROOT) for p in _modules() if "torch.load(" in p.read_text()]
    assert readers == [Path("brats/checkpoint.py")], readers


def test_tools_are_thin():
    for tool in (ROOT / "tools").glob("*.py"):
        text = tool.read_text()
        assert len(text.splitlines()) <= 15, tool
        assert "from brats.cli import main" in text, tool


def test_imports_flow_one_way():
    wrong = []
    for p in _modules():
        top = _top(p)
        if top == "__init__":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brats."):
                target = node.module.split(".")[1]
                if target == top or (top, node.module) in EXCEPTIONS:
                    continue
                if _layer(target) >= _layer(top):
                    wrong.append(f"{p.relative_to(ROOT)} imports {node.module}")
    assert not wrong, wrong


def test_prediction_never_imports_training():
    for p in (PKG / "predict").rglob("*.py"):
        assert "brats.train" not in p.read_text(), p
