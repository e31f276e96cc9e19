"""The README's Python examples read as one session: every name they use is defined before it is used.

Running them all takes minutes (each call is tested on its own elsewhere); what goes wrong in a
README is an example that uses a name no earlier line defines, or one that no longer parses.
"""

import ast
import builtins
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _defined(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
    return names


def test_the_readme_has_python_examples():
    assert len(_blocks()) >= 5


def test_every_name_an_example_uses_is_defined_before():
    known = set(dir(builtins))
    for i, block in enumerate(_blocks(), 1):
        tree = ast.parse(block, filename=f"README block {i}")
        # In order, statement by statement: a name is defined by an earlier statement or block.
        for stmt in tree.body:
            used = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            defined = _defined(stmt)
            missing = used - known - defined
            assert not missing, f"README block {i}, line {stmt.lineno}: {sorted(missing)} used before it is defined"
            known |= defined
