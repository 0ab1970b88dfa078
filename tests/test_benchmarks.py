"""`make bench` runs end to end and writes its files (speed is measured there, never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_quick_benchmark_writes_results_json_and_table(tmp_path: Path) -> None:
    code, stdout, stderr = run_cli(
        "experiments.benchmarks.run", "--quick", "--out", str(tmp_path), timeout=1800
    )
    assert code == 0, stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["model"] for row in results["training"]] == ["vae", "dcgan"]
    for row in results["training"]:
        # Both sides trained and were timed after the warm-up, in the same invocation.
        assert row["framework_images_per_s"] > 0 and row["raw_images_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["framework_images_per_s"] / row["raw_images_per_s"])
        assert row["startup_s"] > 0 and row["framework_peak_rss_mb"] > 0
    options = {(row["model"], row["option"]) for row in results["options"]}
    assert options == {(m, o) for m in ("vae", "dcgan") for o in ("channels_last", "bf16-mixed", "compile")}
    assert results["evaluation"]["n_fake"] == 500
    assert results["export"]["png_images_per_s"] > 0

    table = (tmp_path / "results.md").read_text()
    assert "| vae |" in table and "| dcgan |" in table and "Machine:" in table
    assert table.strip() in stdout
