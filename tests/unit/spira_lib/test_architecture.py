"""The core stays closed and small: import rules and size limits, checked on every core module."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "spira_lib"
ADAPTERS = CORE / "adapters"
# Layers above the core, and infrastructure only adapters may touch.
FORBIDDEN_IN_CORE = {"flows", "tasks", "deployments", "spira_cli", "spira_demo", "bench", "prefect", "prefect_aws", "prefect_dask", "boto3", "botocore", "mlflow"}
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_nothing_from_the_layers_above(path: Path) -> None:
    bad = imported_roots(path) & FORBIDDEN_IN_CORE
    if ADAPTERS in path.parents:
        bad -= {"boto3", "botocore", "mlflow"}  # adapters are where infrastructure clients live
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_small_or_says_why(path: Path) -> None:
    text = path.read_text()
    lines = len(text.splitlines())
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert lines <= MAX_MODULE_LINES or "Why this module is long" in docstring, (
        f"{path.relative_to(ROOT)} has {lines} lines (limit {MAX_MODULE_LINES}); split it or say why at its top"
    )


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_functions_are_short(path: Path) -> None:
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: {', '.join(long)}"


def test_the_import_rule_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import prefect\nfrom flows.retrain import retrain_flow\nfrom spira_lib import config\n")
    assert imported_roots(bad) & FORBIDDEN_IN_CORE == {"prefect", "flows"}


def test_importing_the_whole_core_loads_no_orchestration() -> None:
    """Every core module imports in a fresh interpreter without pulling Prefect or boto3 in."""
    import subprocess
    import sys

    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in core_modules()]
    modules = [m for m in modules if not m.startswith("spira_lib.adapters.s3")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'boto3', 'botocore', 'flows', 'tasks', 'deployments'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
