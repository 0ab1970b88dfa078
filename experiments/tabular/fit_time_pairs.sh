#!/usr/bin/env bash
# Fit time of this framework's TVAE and CTGAN against the `ctgan` package's, run one after the other
# (alternating) so that both see the same machine load: doctor_aus, seed 0, 100 epochs, two
# repetitions. The framework's runs use the study's overrides (run.py, `ours`); its fit time is
# metrics.json `timing.fit_s`, the package's `fit_s` of reference.py. Needs the package in
# experiments/tabular/.bench (`python -m experiments.tabular.run --install-reference`).
#   bash experiments/tabular/fit_time_pairs.sh /tmp/fit_pairs
set -euo pipefail
out=${1:-/tmp/fit_pairs}
cd "$(dirname "$0")/../.."
root=$PWD
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
for rep in 1 2; do
  for model in tvae ctgan; do
    $py -m src.train model=$model data=doctor_aus seed=0 trainer.max_epochs=100 model.monitor=null \
      metrics.every_n_epochs=100 trainer.enable_progress_bar=false \
      hydra.run.dir="$out/${model}_ours_$rep" paths.log_dir="$out" > "$out/${model}_ours_$rep.log" 2>&1
    PYTHONPATH="$root/experiments/tabular/.bench:$root" $py -m experiments.tabular.reference --table doctor_aus \
      --model $model --seed 0 --epochs 100 --batch-size 500 --out "$out/${model}_ref_$rep.json" > "$out/${model}_ref_$rep.log" 2>&1
  done
done
$py - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| model | repetition | this framework fit s (quality) | ctgan 0.12.1 fit s (quality) |")
print("|---|---|---|---|")
for model in ("tvae", "ctgan"):
    for rep in (1, 2):
        ours = json.loads((out / f"{model}_ours_{rep}" / "metrics.json").read_text())
        ref = json.loads((out / f"{model}_ref_{rep}.json").read_text())
        print(f"| {model} | {rep} | {ours['timing']['fit_s']:.1f} ({ours['test/quality']:.3f}) | "
              f"{ref['fit_s']:.1f} ({ref['scores']['test/quality']:.3f}) |")
PY
