"""End-to-end: the whole workflow on configs/tiny.yaml in a temporary directory."""

import shutil
import subprocess
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


def summary(workdir: Path, config: Path = TINY) -> list[dict[str, str]]:
    """One row per output file of the workflow's DAG (file, rule, status, plan): `snakemake --summary`."""
    result = snakemake(workdir, "--summary", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    header, rows = lines[0], lines[1:]
    return [dict(zip(header, row)) for row in rows]


def planned_outputs(workdir: Path) -> list[str]:
    return [row["output_file"] for row in summary(workdir)]


def planned_jobs(output: str) -> dict[str, int]:
    """Rule → job count from the job-stats table of a dry run."""
    jobs, table = {}, False
    for line in output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
        elif table and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
        elif table and parts[:1] == ["total"]:
            break
    return jobs


@pytest.mark.slow
def test_tiny_workflow_produces_every_target_figure(finished_run):
    planned = {f for f in planned_outputs(finished_run) if f.startswith("results/figures/")}
    produced = {str(f.relative_to(finished_run)) for f in (finished_run / "results/figures").rglob("*.png")}
    assert planned == produced
    assert len(planned) >= 25  # every stage has at least one figure
    assert all((finished_run / f).stat().st_size > 10_000 for f in produced)
    assert (finished_run / "results/runs/m1d-clean/checkpoints.h5").exists()
    assert not list(finished_run.glob("results/runs/*/.resume"))  # resume state cleaned up


@pytest.mark.slow
def test_claims_page_reads_every_paper1_stage(finished_run):
    """The tiny preset runs every paper-1 stage, so its claims page has all nine claims, each decided or
    marked, and the accuracy of every composite run."""
    text = (finished_run / "results/stats/claims.md").read_text()
    summary = text.split("| claim | verdict |")[1].split("\n\n")[0].splitlines()
    names = ["Fig. 3", "Fig. 4", "Fig. 5", "Table 1", "Fig. 8", "Sec. 6)", "Fig. 11", "Fig. 18", "App. F.A"]
    for name in names:
        assert any(name in line and "not computed" not in line for line in summary), name
    assert "| m1d-clean |" in text and "| m1d-noisy |" in text


def overlay(workdir: Path, name: str, text: str) -> Path:
    """A config file of the tests: `text` on top of the tiny preset."""
    path = workdir / f"{name}.yaml"
    path.write_text(f"extends: {TINY}\n{text}\n")
    return path


@pytest.mark.slow
def test_progress_switch_reruns_nothing(finished_run):
    """`--config progress=True` (the switch a user flips) plans nothing: progress is no job's param."""
    result = snakemake(finished_run, "-n", "--config", "progress=True")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        "composite: {figure_depth: 1}",
        "dynamics: {trajectories: {figure_lines: 7}}",
        "stats: {figure_eval_set: null}",
        "surrogates: {figure_window: 0}",
        "mislabel: {figure_scores: [aum, confidence]}",
    ],
)
def test_figure_choices_rerun_figures_only(finished_run, change):
    """Figure choices reach figure rules only: no existing training or analysis output is redone
    (a figure may still need a file that does not exist yet, e.g. a composite at a new figure depth)."""
    rows = summary(finished_run, overlay(finished_run, "figure", change))
    redone = [r for r in rows if r["status"] != "missing" and r["plan"] != "no update"]
    assert redone and all(r["rule"].startswith("plot_") for r in redone), redone
    assert not [r for r in rows if r["rule"] == "train" and r["plan"] != "no update"]


@pytest.mark.slow
def test_a_changed_analysis_setting_reruns_its_analysis(finished_run):
    """The check above can fail: a key a job reads does replan that job, and only its dependants."""
    result = snakemake(
        finished_run, "-n", config=overlay(finished_run, "analysis", "separation: {batch_size: 128}")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["separation"] == 4 and "train" not in jobs and "composite" not in jobs


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, expected",
    [
        ("springblock: {leftward: {n_steps: 150}}", {"springblock_leftward": 1, "plot_fig5": 1}),
        (
            "springblock: {second_order: {n_steps: 150}}",
            {"springblock_second_order": 1, "plot_springblock_second_order": 1},
        ),
        (
            "phase: {variants: {depth3: {epochs: 3}}}",
            {"phase_cell": 2, "phase_diagram": 1, "plot_phase_diagram": 1},
        ),
        ("guided: {phase_epochs: 2}", {"guided": 1, "plot_guided": 1}),
        ("regression: {target: {seed: 1}}", {"regression_load": 1, "plot_regression_load": 1}),
        ("linear_nets: {lr: 0.002}", {"linear_nets": 1, "plot_fig5": 1, "plot_separation_metrics": 1}),
    ],
)
def test_a_paper2_setting_reruns_only_its_stage(finished_run, change, expected):
    """Paper 2's stages read only their own keys: a change replans that stage and its figures, nothing
    else (no other spring–block table, no cell of the sweep itself for a variant)."""
    result = snakemake(finished_run, "-n", config=overlay(finished_run, "paper2", change))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    jobs.pop("all", None)
    assert jobs == expected


@pytest.mark.slow
def test_report_contains_every_target_figure(finished_run):
    result = snakemake(finished_run, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished_run / "report.html").read_text(errors="replace")
    figures = [f for f in planned_outputs(finished_run) if f.startswith("results/figures/")]
    assert figures
    for figure in figures:
        assert Path(figure).name in html, figure


def test_invalid_config_fails_before_any_job(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["runs"]["m1d-clean"]["model"] = "vgg"
    config["extends"] = str(ROOT / "config.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0
    assert "config key `runs.m1d-clean.model`" in result.stderr and "resnet20" in result.stderr
    assert not (tmp_path / "results").exists()


def test_schema_violation_fails_before_any_job(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["runs"]["m1d-clean"]["label_noise"] = 1.5
    config["extends"] = str(ROOT / "config.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0 and "config key `runs.m1d-clean.label_noise`" in result.stderr
    assert not (tmp_path / "results").exists()


def test_misspelled_section_fails_before_any_job_with_a_suggestion(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {TINY}\ncomposit: {{window: 1}}\n")
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0
    assert "config key `composit`: unknown key; did you mean `composite`?" in result.stderr
    assert not (tmp_path / "results").exists()


def test_dry_run_of_the_default_config_lists_the_dag(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", config=ROOT / "config.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ("download", "train", "composite", "plot_memory_window"):
        assert rule in result.stdout


def copy_of(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished workflow (outputs, logs and Snakemake's metadata, mtimes kept)."""
    workdir = tmp_path / "copy"
    shutil.copytree(finished, workdir, symlinks=True)
    return workdir


@pytest.mark.slow
def test_a_damaged_checkpoint_store_fails_its_dependent_job_with_the_file_named(finished_run, tmp_path):
    """Truncate a finished run's store: the analysis that reads it stops with the message (in the
    console and the job's log), the store is not rebuilt behind the user's back, no output is left."""
    workdir = copy_of(finished_run, tmp_path)
    store = workdir / "results/runs/m1d-clean/checkpoints.h5"
    size = store.stat().st_size
    with open(store, "r+b") as f:
        f.truncate(size // 3)
    result = snakemake(workdir, "results/runs/m1d-clean/separation.h5")
    assert result.returncode != 0
    message = (
        f"UnusableInputError: `results/runs/m1d-clean/checkpoints.h5` is truncated: {size // 3} of its "
        f"{size} bytes are there (a full disk, a killed write or a copy that stopped half-way). "
        "It is rebuilt by rule `train` or `import_run`: delete it and run snakemake again."
    )
    assert message in result.stderr, result.stderr[-3000:]
    assert message in (workdir / "results/logs/separation/m1d-clean.log").read_text()
    assert "rule train:" not in result.stdout + result.stderr
    assert not (workdir / "results/runs/m1d-clean/separation.h5").exists()


@pytest.mark.slow
def test_a_stale_checkpoint_store_is_reported_instead_of_analysed(finished_run, tmp_path):
    """With `--rerun-triggers mtime` a changed run config does not retrain; the analysis then refuses
    the store trained with the old config instead of analysing it."""
    workdir = copy_of(finished_run, tmp_path)
    config = overlay(workdir, "longer", "runs: {m1d-clean: {epochs: 5}}")
    args = ["--rerun-triggers", "mtime", "--forcerun", "separation", "results/runs/m1d-clean/separation.h5"]
    result = snakemake(workdir, *args, config=config)
    assert result.returncode != 0
    assert (
        "`results/runs/m1d-clean/checkpoints.h5` is stale: it was written for another config "
        "(run.epochs: 4 in the file, 5 in this job's config). It is rebuilt by rule `train` or "
        "`import_run`: delete it and run snakemake again."
    ) in result.stderr, result.stderr[-3000:]
