"""The worked example end to end: a plain PyTorch script trains `examples/my_model.py` and saves a
checkpoint per epoch; `examples/config.yaml` imports the run and the workflow analyses it."""

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from test_workflow import ROOT, snakemake

RUN_FIGURES = [
    "results/figures/training_curves.png",
    "results/figures/composite/my-cnn/memory_test.png",
    "results/figures/memory_window.png",
    "results/figures/isotropy/anisotropy_memory_my-cnn.png",
    "results/figures/dynamics/drift.png",
    "results/figures/separation/load_curves_my-cnn.png",
]
SMALL = """extends: examples/config.yaml
composite: {eval_sets: [test], depths: [2]}
isotropy: {epochs: [4], M: 16, B: 100}
dynamics: {depths: [2]}
separation: {eval_sets: [test], train_subset: 200}
"""


@pytest.mark.slow
def test_example_imports_a_plain_pytorch_run_and_analyses_it(tmp_path):
    shutil.copytree(
        ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("run", "__pycache__")
    )
    script = [sys.executable, "examples/train_my_model.py", "--epochs", "4", "--samples", "1000"]
    trained = subprocess.run(script, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "featdyn" not in (ROOT / "examples/train_my_model.py").read_text().split('"""', 2)[2]  # no import
    printed = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", trained.stdout)]
    (tmp_path / "small.yaml").write_text(SMALL)
    planned = snakemake(tmp_path, "-n", config=tmp_path / "small.yaml")  # the whole report is planned
    assert planned.returncode == 0, planned.stderr[-3000:]
    for rule in ("import_run", "composite", "isotropy", "separation", "plot_consistency_kde", "phase_cell"):
        assert rule in planned.stdout, rule
    assert re.search(r"^train\s", planned.stdout, re.MULTILINE) is None  # imported, not trained
    result = snakemake(tmp_path, *RUN_FIGURES, config=tmp_path / "small.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    assert all((tmp_path / figure).stat().st_size > 10_000 for figure in RUN_FIGURES)
    metrics = pd.read_csv(tmp_path / "results/runs/my-cnn/metrics.tsv", sep="\t")
    assert metrics["epoch"].tolist() == [0, 1, 2, 3, 4]
    # the script's own test accuracy: the checkpoints, the data and its normalisation (none) carried over
    assert metrics["test_acc"].tolist()[1:] == pytest.approx(printed, abs=1e-3)
