"""The SLURM profile on a real one-node SLURM cluster started by the tests (root + apt needed).

Run:  pytest -m slurm tests/test_slurm.py      (skips with the reason where it cannot run)

To run the real pipeline on the same cluster, add a test here that takes the `slurm` fixture:

    def test_tiny_pipeline_on_slurm(slurm: LocalSlurm, tmp_path: Path) -> None:
        result = run_snakemake_on_slurm(
            tmp_path, REPO_ROOT / "Snakefile",
            ["--configfile", str(REPO_ROOT / "configs" / "tiny.yaml")], timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:]
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from slurm_cluster import (
    ACCOUNT,
    PARTITION,
    REPO_ROOT,
    SLURM_PROFILE,
    LocalSlurm,
    SlurmUnavailable,
    run_snakemake,
    run_snakemake_locally,
    run_snakemake_on_slurm,
    slurm_test_env,
)

SMOKE_SNAKEFILE = Path(__file__).parent / "data" / "slurm_smoke" / "Snakefile"
SMOKE_OUTPUTS = ("numbers.txt", "squares/a.txt", "squares/b.txt")
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    """A running local SLURM cluster for the whole module; skipped where it cannot run."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(LocalSlurm())
        except SlurmUnavailable as err:
            pytest.skip(f"no local SLURM cluster: {err}")
        yield cluster


def read_outputs(workdir: Path) -> dict[str, str]:
    return {name: (workdir / name).read_text() for name in SMOKE_OUTPUTS}


def describe(result_output: str, cluster: LocalSlurm) -> str:
    """Failure message: Snakemake's output tail and the controller's log tail."""
    return f"{result_output[-4000:]}\n--- slurmctld.log:\n{cluster.log_tail('slurmctld')}"


@pytest.mark.slurm
def test_profile_parses_and_reads_env(slurm: LocalSlurm, tmp_path: Path) -> None:
    """Dry run with the unmodified profile: it parses (set-resources/set-threads for rules the
    workflow lacks are fine) and takes account and partition from FEATDYN_SLURM_*."""
    args = ["-n", "--snakefile", str(SMOKE_SNAKEFILE), "--profile", str(SLURM_PROFILE)]
    with_env = run_snakemake(args, tmp_path, RUN_TIMEOUT_S, slurm_test_env())
    assert with_env.returncode == 0, with_env.stdout[-4000:]
    assert f"slurm_account={ACCOUNT}" in with_env.stdout
    assert f"slurm_partition={PARTITION}" in with_env.stdout
    assert "mem_mb=4000" in with_env.stdout

    env = {k: v for k, v in slurm_test_env().items() if not k.startswith("FEATDYN_SLURM_")}
    without_env = run_snakemake(args, tmp_path, RUN_TIMEOUT_S, env)
    assert without_env.returncode == 0, without_env.stdout[-4000:]
    assert "slurm_account" not in without_env.stdout
    assert "slurm_partition" not in without_env.stdout


@pytest.mark.slurm
def test_workflow_runs_on_slurm(slurm: LocalSlurm, tmp_path: Path) -> None:
    """The smoke workflow runs through sbatch and gives the same outputs as a local run."""
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    local.mkdir()

    result = run_snakemake_on_slurm(on_slurm, SMOKE_SNAKEFILE, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, describe(result.stdout, slurm)
    reference = run_snakemake_locally(local, SMOKE_SNAKEFILE, timeout=RUN_TIMEOUT_S)
    assert reference.returncode == 0, reference.stdout[-4000:]

    assert read_outputs(on_slurm) == read_outputs(local)
    for log in ("numbers", "square_a", "square_b"):  # each job ran inside a SLURM job
        ran_on = (on_slurm / "logs" / f"{log}.log").read_text().strip()
        assert ran_on.removeprefix("ran_on=").isdigit(), f"{log}: {ran_on!r}"
        assert (local / "logs" / f"{log}.log").read_text().strip() == "ran_on=local"


@pytest.mark.slurm
def test_failing_job_is_reported(slurm: LocalSlurm, tmp_path: Path) -> None:
    """A job that exits non-zero makes Snakemake fail and name the rule."""
    result = run_snakemake_on_slurm(
        tmp_path, SMOKE_SNAKEFILE, ["--retries", "0", "broken.txt"], timeout=RUN_TIMEOUT_S
    )
    assert result.returncode != 0, describe(result.stdout, slurm)
    assert "Error in rule broken" in result.stdout, describe(result.stdout, slurm)
    assert "FAILED" in result.stdout, describe(result.stdout, slurm)
    assert not (tmp_path / "broken.txt").exists()


def gpu_rules(profile: Path = SLURM_PROFILE) -> dict[str, dict[str, object]]:
    """The profile's set-resources entries that ask for a GPU."""
    config = yaml.safe_load((profile / "config.yaml").read_text())
    return {rule: res for rule, res in (config.get("set-resources") or {}).items() if res.get("gpu")}


def sbatch_calls(output: str) -> dict[str, str]:
    """Rule name -> sbatch command line, from Snakemake's --verbose output."""
    calls = re.findall(r"sbatch call: (sbatch .*? --comment rule_(\w+?)(?:_wildcards_\S*)? .*)", output)
    return {rule: call for call, rule in calls}


def write_snakefile(folder: Path, rules: Sequence[str]) -> Path:
    """A Snakefile with one `touch` rule per name and a local `all` rule needing them all."""
    rule_text = 'rule {0}:\n    output: "{0}.txt"\n    shell: "touch {{output}}"\n\n'
    body = "".join(rule_text.format(rule) for rule in rules)
    targets = [f"{rule}.txt" for rule in rules]
    snakefile = folder / "Snakefile"
    snakefile.write_text(f"{body}rule all:\n    input: {targets}\n    localrule: True\n")
    return snakefile


@pytest.mark.slurm
def test_gpu_rules_request_gpus(slurm: LocalSlurm, tmp_path: Path) -> None:
    """Unmodified profile: its GPU rules are submitted with --gpus and --cpus-per-gpu (and no
    --cpus-per-task). The test cluster has no GPUs, so sbatch refuses them; only the flags of
    the submission are checked."""
    rules = gpu_rules()
    assert rules, "profiles/slurm gives no rule a GPU"
    snakefile = write_snakefile(tmp_path, list(rules))
    args = ["--snakefile", str(snakefile), "--profile", str(SLURM_PROFILE), "--workflow-profile", "none"]
    result = run_snakemake([*args, "--verbose", "--retries", "0", "--keep-going", "all"], tmp_path,
                           RUN_TIMEOUT_S, slurm_test_env())  # fmt: skip
    calls = sbatch_calls(result.stdout)
    for rule, resources in rules.items():
        assert rule in calls, describe(result.stdout, slurm)
        assert f"--gpus={resources['gpu']}" in calls[rule]
        assert f"--cpus-per-gpu={resources['cpus_per_gpu']}" in calls[rule]
        assert "--cpus-per-task" not in calls[rule]


TRAIN_SCRIPT = """
import logging, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO)
from helpers import dropout_model, tiny_spec, train_tiny_run

run_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])
model, calls = dropout_model(), [0]

def slow_training_batches(module, inputs):
    if module.training:
        calls[0] += 1
        if calls[0] == 6 + 3:  # epoch 2, batch 3 (6 batches per epoch)
            marker.touch()
        time.sleep(0.2)

model.register_forward_pre_hook(slow_training_batches)
train_tiny_run(run_dir, model, tiny_spec())
"""

TRAIN_SNAKEFILE = """
rule train_tiny:
    output:
        "run/checkpoints.h5",
    resources:
        runtime=5,
    shell:
        "PYTHONPATH={tests}:{src} {python} train_tiny.py run marker >> attempts.log 2>&1"
"""
"""One training job; every attempt appends to `attempts.log` (Snakemake clears a rule's `log:` on retry)."""


@pytest.mark.slurm
def test_training_sigterm_from_slurm_resumes_on_retry(
    slurm: LocalSlurm, tmp_path: Path, one_thread: None
) -> None:
    """SIGTERM from SLURM to the job's processes mid-epoch (what a time limit sends first; here
    `scancel --signal=TERM`): training saves its state and exits 143, the job FAILs, the profile's
    retry resubmits it, and the resumed run ends bit-identical to an uninterrupted one.

    (A plain `scancel` would leave the job `CANCELLED by 0` in sacct, a state the plugin 2.8 does not
    recognise as failed, so Snakemake would wait for it for ever.)"""
    from helpers import dropout_model, tiny_spec, train_tiny_run

    tests = Path(__file__).parent
    (tmp_path / "train_tiny.py").write_text(TRAIN_SCRIPT)
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(TRAIN_SNAKEFILE.format(tests=tests, src=REPO_ROOT / "src", python=sys.executable))
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}
    run = threading.Thread(
        target=lambda: outcome.update(
            result=run_snakemake_on_slurm(tmp_path, snakefile, timeout=RUN_TIMEOUT_S)
        )
    )
    run.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (tmp_path / "marker").exists() and run.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    subprocess.run(["scancel", "--signal=TERM", *slurm.job_ids()], check=False)
    run.join()
    result = outcome["result"]
    assert result.returncode == 0, describe(result.stdout, slurm)
    assert "SLURM status is: 'FAILED'" in result.stdout, describe(result.stdout, slurm)
    log = (tmp_path / "attempts.log").read_text()
    assert "training stopped by SIGTERM during epoch 2" in log, log
    assert re.search(r"resuming from \S+resume.pt at epoch 2, batch \d of 6", log), log

    train_tiny_run(tmp_path / "whole", dropout_model(), tiny_spec())  # one thread, as the job's script
    with (
        h5py.File(tmp_path / "run/checkpoints.h5") as resumed,
        h5py.File(tmp_path / "whole/checkpoints.h5") as whole,
    ):
        for name in (
            "epochs",
            *(f"state/{k}" for k in whole["state"]),
            *(f"metrics/{k}" for k in whole["metrics"]),
        ):
            assert np.array_equal(resumed[name][()], whole[name][()]), name


def test_default_profile_parses(tmp_path: Path) -> None:
    """profiles/default (local runs) parses; its set-threads for absent rules are ignored."""
    args = [
        "-n",
        "--snakefile",
        str(SMOKE_SNAKEFILE),
        "--workflow-profile",
        str(REPO_ROOT / "profiles" / "default"),
    ]
    result = run_snakemake(args, tmp_path, RUN_TIMEOUT_S, dict(os.environ))
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Using workflow specific profile" in result.stdout


@pytest.mark.slurm
def test_featdyn_jobs_carry_their_computed_runtime_and_memory(slurm: LocalSlurm, tmp_path: Path) -> None:
    """The real workflow on SLURM: download and train are submitted with the wall time and memory that
    featdyn.costs computes from the config, not the profile's 60-minute default."""
    from featdyn import costs
    from featdyn.config import load_config

    preset = REPO_ROOT / "configs" / "tiny.yaml"
    target = "results/runs/m1d-clean/checkpoints.h5"
    result = run_snakemake_on_slurm(
        tmp_path, REPO_ROOT / "Snakefile", ["--configfile", str(preset), "--verbose", target], timeout=600
    )
    assert result.returncode == 0, describe(result.stdout, slurm)
    expected = costs.train_resources(load_config(preset), "m1d-clean")
    calls = sbatch_calls(result.stdout)
    assert "train" in calls, describe(result.stdout, slurm)
    call = calls["train"]
    assert f"-t {expected['runtime']}" in call, call
    assert f"--mem {expected['mem_mb']}" in call, call
    assert (tmp_path / target).exists()
