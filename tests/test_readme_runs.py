"""The README's commands that need its trained runs, exports and fills (``<run>``, ``.../``,
``synthetic/mnist_cvae``, the rare-class run and its fill), and its Python snippet: the other half
of ``tests/test_readme.py`` (which says how every command runs), in its own module so that its own
copy of the checkout runs beside the first half under `make test`'s two workers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import (
    README,
    RUNNABLE,
    Checkout,
    checkout,  # noqa: F401 (the module-scoped fixture: this module's own copy)
    needs_runs,
    readme_python,
    run_readme_command,
)

RUNS = [c for c in RUNNABLE if needs_runs(c)]


@pytest.mark.slow
@pytest.mark.parametrize("command", RUNS, ids=[c[:80] for c in RUNS])
def test_readme_command_runs_as_printed(checkout: Checkout, command: str, tmp_path: Path) -> None:  # noqa: F811
    run_readme_command(checkout, command, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("block", range(len(readme_python(README.read_text()))))
def test_readme_python_runs_as_printed(checkout: Checkout, block: int) -> None:  # noqa: F811
    code = readme_python(README.read_text())[block]
    cvae = checkout.base_run("cvae").relative_to(checkout.root)
    code = code.replace("logs/train/runs/<run>", str(cvae))
    shutil.rmtree(checkout.root / "synthetic" / "notebook", ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout.root, env=checkout.env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (checkout.root / "synthetic" / "notebook" / "manifest.json").is_file()
