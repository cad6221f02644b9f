"""Job sizes declared to schedulers: computed from the config, monotone in the work, capped."""

import copy

import pytest
from helpers import ROOT, tiny_config

from featdyn import costs
from featdyn.config import load_config


@pytest.fixture(scope="module")
def paper():
    return load_config(ROOT / "configs/paper.yaml")


def test_paper_training_jobs_outgrow_the_profiles_default_hour(paper):
    for run in ("c10-r20-clean", "c100-r20-noisy"):
        assert costs.train_resources(paper, run)["runtime"] > 60  # the SLURM profile's default
    long = load_config(ROOT / "configs/paper-long.yaml")
    assert (
        costs.train_resources(long, "c10-r20-long-clean")["runtime"]
        > 4 * costs.train_resources(paper, "c10-r20-clean")["runtime"]
    )


def test_runtime_follows_the_work(paper):
    config = copy.deepcopy(paper)
    base = costs.training_seconds(config, "c10-r20-clean", 200)
    assert costs.training_seconds(config, "c10-r20-clean", 100) == pytest.approx(base / 2)
    assert costs.forward_flops(config, "c10-r20-clean") == pytest.approx(81_102_080)  # ResNet-20, 32×32
    config["jobs"]["estimate_device"] = "cpu"
    assert (
        costs.train_resources(config, "c10-r20-clean")["runtime"]
        > 10 * costs.train_resources(paper, "c10-r20-clean")["runtime"]
    )
    config["jobs"]["max_runtime_min"] = 90
    assert costs.train_resources(config, "c10-r20-clean")["runtime"] == 90


def test_memory_counts_data_and_checkpoints(paper):
    cifar = costs.train_resources(paper, "c10-r20-clean")["mem_mb"]
    mnist = costs.train_resources(paper, "mnist-mlp-clean")["mem_mb"]
    assert costs.BASE_MEMORY_MB < mnist < cifar  # 60k 28×28 vs 60k 3×32×32 images
    composite = costs.composite_resources(paper, "c10-r20-clean", "train")["mem_mb"]
    assert composite > paper["composite"]["memory_budget_mb"]


def test_tiny_jobs_are_small():
    config = tiny_config()
    for run in config["runs"]:
        resources = costs.train_resources(config, run)
        assert resources["runtime"] <= 10 and resources["mem_mb"] < 4000
    assert costs.dataset_sizes(config["datasets"]["mnist1d"]) == (480, 120)
