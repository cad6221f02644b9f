"""End-to-end: the whole workflow on configs/tiny.yaml in a temporary directory."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
TINY = ROOT / "configs/tiny.yaml"


def snakemake(
    workdir: Path, *args: str, config: Path = TINY, timeout: int = 600
) -> subprocess.CompletedProcess:
    cmd = [
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_workflow")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_tiny_workflow_produces_every_figure(finished_run):
    figures = sorted((finished_run / "results/figures").rglob("*.png"))
    assert len(figures) >= 5
    assert all(f.stat().st_size > 10_000 for f in figures)
    assert (finished_run / "results/runs/tiny-clean/checkpoints.h5").exists()
    assert not list(finished_run.glob("results/runs/*/.resume"))  # resume state cleaned up


@pytest.mark.slow
def test_rerun_of_a_finished_workflow_does_nothing(finished_run):
    start = time.time()
    result = snakemake(finished_run, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
    assert time.time() - start < 30


@pytest.mark.slow
def test_report_contains_every_figure(finished_run):
    result = snakemake(finished_run, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished_run / "report.html").read_text(errors="replace")
    for figure in (finished_run / "results/figures").rglob("*.png"):
        assert figure.name in html, figure.name


def test_invalid_config_fails_before_any_job(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["runs"]["tiny-clean"]["model"] = "vgg"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0
    assert "config key `runs.tiny-clean.model`" in result.stderr and "resnet20" in result.stderr
    assert not (tmp_path / "results").exists()


def test_schema_violation_fails_before_any_job(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["runs"]["tiny-clean"]["label_noise"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0 and "label_noise" in result.stderr
    assert not (tmp_path / "results").exists()


def test_dry_run_of_the_default_config_lists_the_dag(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", config=ROOT / "config.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ("download", "train", "composite", "plot_memory_window"):
        assert rule in result.stdout
