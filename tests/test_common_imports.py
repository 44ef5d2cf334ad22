"""`common/` is a leaf: every app may import it, so it imports none of them."""

import ast
from pathlib import Path

import common

APPS = {"exoclaw", "agents", "routing", "sandbox", "webhooks"}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_common_imports_none_of_the_apps():
    for path in sorted(Path(common.__file__).parent.glob("*.py")):
        assert not imported_packages(path) & APPS, f"{path.name} imports {imported_packages(path) & APPS}"
