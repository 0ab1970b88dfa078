"""The package layers: no package imports one above it, and no entry point imports another.

The order is the one docs/architecture.md draws. A new package gets a rank here; an import that
goes upwards (e.g. ``src/utils`` importing ``src.models``) fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower ranks are the foundation; a package may import its own rank only within itself.
RANKS = {
    "utils": 0,
    "data": 1,
    "models": 1,
    "hardware": 1,
    "logger": 1,
    "callbacks": 1,
    "metrics": 2,
    "privacy": 2,
    "export": 3,
    "inpainting": 4,
    "runtime": 4,
}
ENTRY_RANK = 5


def imported_packages(path: Path) -> set[str]:
    """``src.<name>`` modules a file imports (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("src."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("src."))
    return names


def layer_violations(src: Path) -> list[str]:
    entry_points = {p.stem for p in src.glob("*.py") if p.stem != "__init__"}
    problems = []
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src)
        owner = relative.parts[0] if len(relative.parts) > 1 else None
        if owner is None and path.stem == "__init__":
            continue
        rank = RANKS.get(owner, ENTRY_RANK) if owner else ENTRY_RANK
        if owner and owner not in RANKS:
            problems.append(f"src/{owner} has no layer: give it a rank in tests/test_layers.py")
            continue
        for name in imported_packages(path):
            if name == owner:
                continue
            if name in entry_points:
                problems.append(f"src/{relative} imports the entry point src/{name}.py")
            elif RANKS.get(name, ENTRY_RANK) >= rank:
                problems.append(f"src/{relative} (layer {rank}) imports src.{name} (layer {RANKS.get(name)})")
    return problems


def test_no_package_imports_a_package_above_it_and_no_entry_point_imports_another() -> None:
    assert layer_violations(SRC) == []


@pytest.mark.parametrize(
    ("where", "source", "fragment"),
    [
        ("utils/bad.py", "from src.models.base import GenerativeModule\n", "imports src.models"),
        ("metrics/bad.py", "from src.runtime.build import build\n", "imports src.runtime"),
        ("data/bad.py", "import src.models.gan\n", "imports src.models"),
        ("generate2.py", "from src.train import train\n", "imports the entry point src/train.py"),
        ("newpkg/mod.py", "x = 1\n", "src/newpkg has no layer"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, where: str, source: str, fragment: str) -> None:
    for package in RANKS:
        (tmp_path / package).mkdir()
    (tmp_path / "train.py").write_text("")
    (tmp_path / where).parent.mkdir(exist_ok=True)
    (tmp_path / where).write_text(source)
    problems = layer_violations(tmp_path)
    assert any(fragment in p for p in problems), problems
