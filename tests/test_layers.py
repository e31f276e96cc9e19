"""The layers run one way: foundation, locate, edit, then the application (docs/design.md)."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"][0]


def test_the_layers_contract_is_kept():
    # The contract's own command, as a maintainer would run it.
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_every_workbench_module_sits_in_a_layer():
    named = {m.strip() for layer in _contract()["layers"] for m in layer.split("|")}
    top = {p.stem for p in (ROOT / "workbench").iterdir() if (p.suffix == ".py" or (p / "__init__.py").exists())}
    unplaced = {f"workbench.{m}" for m in top - {"__init__", "__main__"}} - named
    assert not unplaced, f"add these to a layer in pyproject.toml: {sorted(unplaced)}"


def test_a_locator_loads_only_the_foundation():
    code = "import sys, locate.location; print(sorted(m for m in sys.modules if m.startswith('workbench.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    modules = ast.literal_eval(out.strip())
    assert modules and all(m.startswith("workbench.core") for m in modules), modules


def test_the_top_level_names_load_lazily():
    code = (
        "import sys, workbench; before = set(sys.modules); f = workbench.export; "
        "print(callable(f), 'workbench.checkpoint.export' in before, callable(workbench.load))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "True"]


def test_no_module_imports_a_private_name_from_another():
    offenders = []
    for package in ("workbench", "locate", "edit"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.ImportFrom)
                    and node.module
                    and node.module.split(".")[0]
                    in (
                        "workbench",
                        "locate",
                        "edit",
                    )
                ):
                    offenders += [
                        f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_")
                    ]
    assert not offenders, offenders


def test_no_module_is_loaded_by_a_name_in_a_string():
    # Registries and lazy names hold functions or import statements that grep and editors follow.
    found = [
        str(path.relative_to(ROOT))
        for package in ("workbench", "locate", "edit")
        for path in (ROOT / package).rglob("*.py")
        if "import_module(" in path.read_text() or "__import__(" in path.read_text()
    ]
    assert not found, found
