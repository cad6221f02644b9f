"""Job sizes for cluster schedulers: the wall time (`runtime`, minutes) and memory (`mem_mb`) each heavy
rule declares, computed from the config (epochs, dataset size, pairs, samples) before any job runs.

Work is counted in floating-point operations: a model's forward pass per sample is measured once with
`torch.utils.flop_counter` on a fresh model, and training costs three forward passes per sample and
step (forward, backward of activations and of weights). Time = work / device rate + steps × per-step
overhead, times `jobs.runtime_scale` (a safety factor), plus a fixed start-up, capped at
`jobs.max_runtime_min`. The rates are conservative readings of this project's own benchmarks (2-core
CPU: ResNet-20 trains at about 480 img/s, 1.2e11 FLOP/s; a data-centre GPU is set at 2e12 FLOP/s with
15 ms per optimiser step, where small-batch training is launch-bound). Memory is the data held as
float32 plus the checkpoints assembled at the end of training plus a fixed interpreter and torch cost.

Resources are no rerun trigger: changing `jobs:` or the rates never recomputes a result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featdyn.data import is_external_source
from featdyn.planning import (
    Config,
    checkpoint_epochs,
    dataset_shape,
    freeze_epoch,
    run_model,
    saved_epochs,
    wants_gpu,
)


@dataclass(frozen=True)
class DeviceRate:
    train_flops: float  # FLOP/s of training (forward + backward)
    eval_flops: float  # FLOP/s of batched inference
    step_seconds: float  # fixed cost of one optimiser step (kernel launches, Python)


RATES = {
    "cpu": DeviceRate(train_flops=1.0e11, eval_flops=1.2e11, step_seconds=0.002),
    "cuda": DeviceRate(train_flops=2.0e12, eval_flops=4.0e12, step_seconds=0.015),
}
STARTUP_MIN = 5.0
BASE_MEMORY_MB = 2000.0
TRAIN_SIZES = {
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "svhn": (73257, 26032),
    "stl10": (5000, 8000),
    "digits": (1797, 0),
}
"""Training and test samples per torchvision source (digits: all samples, split by `test_fraction`)."""
OUTSIDE_GUESS = (50000, 10000)
"""Assumed for an outside dataset whose size is known only once read (a torchvision class)."""


def dataset_sizes(entry: Mapping[str, Any]) -> tuple[int, int]:
    """(training, test) samples of a `datasets` entry, without fetching it."""
    source = entry["source"]
    if is_external_source(source):
        from featdyn.external_data import count_external

        n_train, n_test = count_external(source, entry) or OUTSIDE_GUESS
    elif source == "mnist1d":
        n = entry["num_samples"]
        n_train, n_test = int(n * 0.8), n - int(n * 0.8)
    elif source == "digits":
        n_test = math.ceil(TRAIN_SIZES["digits"][0] * entry["test_fraction"])
        n_train = TRAIN_SIZES["digits"][0] - n_test
    else:
        n_train, n_test = TRAIN_SIZES[source]
    chosen = entry["train_samples"], entry["test_samples"]
    return tuple(n if cap is None else min(n, cap) for n, cap in zip((n_train, n_test), chosen))


@functools.cache
def _forward_flops(model: str, sample_shape: tuple[int, ...], options: str) -> float:
    import json

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from featdyn.models import build_model

    net = build_model(model, sample_shape, 10, **json.loads(options)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *sample_shape))
    return float(max(counter.get_total_flops(), 1))


def forward_flops(config: Config, run: str) -> float:
    """FLOPs of one forward pass of a run's model on one sample."""
    import json

    spec = config["runs"][run]
    shape, _ = dataset_shape(config["datasets"][spec["dataset"]])
    return _forward_flops(spec["model"], tuple(shape), json.dumps(spec["model_options"], sort_keys=True))


def estimate_rate(config: Config) -> DeviceRate:
    """The device whose speed the estimates assume: `jobs.estimate_device`, or for `auto` the device the
    jobs will use (CUDA when `device: cuda`, or `auto` with a driver on this machine)."""
    chosen = config["jobs"]["estimate_device"]
    if chosen == "auto":
        chosen = "cuda" if wants_gpu(config) else "cpu"
    return RATES[chosen]


def minutes(config: Config, seconds: float) -> int:
    """Scaled, padded and capped wall time in whole minutes."""
    jobs = config["jobs"]
    total = STARTUP_MIN + jobs["runtime_scale"] * seconds / 60
    return int(min(math.ceil(total), jobs["max_runtime_min"]))


def training_seconds(config: Config, run: str, epochs: int, rate: DeviceRate | None = None) -> float:
    """Estimated seconds of `epochs` of a run's training and per-epoch evaluation, at `rate` (default:
    `estimate_rate`; `benchmarks/gpu.py` passes the rate it measured)."""
    spec = config["runs"][run]
    n_train, n_test = dataset_sizes(config["datasets"][spec["dataset"]])
    batch = config["recipes"][spec["recipe"]]["batch_size"]
    rate, flops = rate or estimate_rate(config), forward_flops(config, run)
    steps = epochs * math.ceil(n_train / batch)
    work = epochs * (3 * n_train + n_train + n_test) * flops  # training steps and per-epoch evaluation
    return work / rate.train_flops + steps * rate.step_seconds


def _data_mb(config: Config, run: str) -> float:
    spec = config["runs"][run]
    n_train, n_test = dataset_sizes(config["datasets"][spec["dataset"]])
    numel = math.prod(dataset_shape(config["datasets"][spec["dataset"]])[0])
    return 3 * (n_train + n_test) * numel * 4 / 2**20  # raw, float and normalised copies


def _parameters_mb(config: Config, run: str) -> float:
    model = run_model(config["runs"][run], config["datasets"])
    return sum(t.numel() for t in model.state_dict().values()) * 4 / 2**20


def train_resources(config: Config, run: str, epochs: int | None = None) -> dict[str, int]:
    """runtime and mem_mb of training a run (or `epochs` of a continuation of it)."""
    spec = config["runs"][run]
    epochs = spec["epochs"] if epochs is None else epochs
    kept = len(saved_epochs(config, run))
    memory = BASE_MEMORY_MB + _data_mb(config, run) + 3 * kept * _parameters_mb(config, run)
    return {"runtime": minutes(config, training_seconds(config, run, epochs)), "mem_mb": int(memory)}


def continuation_resources(config: Config, run: str, kind: str) -> dict[str, int]:
    """Freezing continuations run from the freeze epoch to the end; re-initialisations retrain."""
    if kind == "freeze":
        epochs = config["runs"][run]["epochs"] - freeze_epoch(config, run)
    else:
        epochs = config["interventions"]["reinit_epochs"]
    return train_resources(config, run, epochs)


def _eval_samples(config: Config, run: str, eval_set: str, subset: int | None) -> int:
    n_train, n_test = dataset_sizes(config["datasets"][config["runs"][run]["dataset"]])
    if eval_set == "train":
        return n_train if subset is None else min(subset, n_train)
    return n_test


def composite_work(config: Config, run: str, eval_set: str) -> tuple[int, int, int]:
    """(analysed epochs, pairs of the band, samples) of a run's composite job on one evaluation set."""
    section = config["composite"]
    n = len(checkpoint_epochs(saved_epochs(config, run), [], section["stride"]))
    window = n - 1 if section["window"] is None else min(section["window"], n - 1)
    pairs = sum(min(n, t + window + 1) - max(0, t - window) for t in range(n))
    return n, pairs, _eval_samples(config, run, eval_set, section["train_subset"])


def composite_seconds(config: Config, run: str, eval_set: str, rate: DeviceRate | None = None) -> float:
    """Estimated seconds of one composite job: a deep forward per (pair, sample), a shallow one per
    (epoch, sample), each costed as a whole forward pass."""
    n, pairs, samples = composite_work(config, run, eval_set)
    return (pairs + n) * samples * forward_flops(config, run) / (rate or estimate_rate(config)).eval_flops


def composite_resources(config: Config, run: str, eval_set: str) -> dict[str, int]:
    """The composite job of a run on one evaluation set (one depth): every pair of the band."""
    section = config["composite"]
    n, _, _ = composite_work(config, run, eval_set)
    seconds = composite_seconds(config, run, eval_set)
    held = section["memory_budget_mb"] + _data_mb(config, run) + n * _parameters_mb(config, run)
    memory = BASE_MEMORY_MB + held
    return {"runtime": minutes(config, seconds), "mem_mb": int(memory)}


def separation_resources(config: Config, run: str) -> dict[str, int]:
    """Load curves at every `stride`-th saved epoch on the configured evaluation sets."""
    section = config["separation"]
    n = len(checkpoint_epochs(saved_epochs(config, run), [], section["stride"]))
    samples = sum(_eval_samples(config, run, e, section["train_subset"]) for e in section["eval_sets"])
    seconds = n * samples * forward_flops(config, run) / estimate_rate(config).eval_flops
    return {"runtime": minutes(config, seconds), "mem_mb": int(BASE_MEMORY_MB + 2 * _data_mb(config, run))}


def isotropy_resources(config: Config, run: str) -> dict[str, int]:
    """M one-step gradients on mini-batches of the run's batch size, then M shallow forward passes."""
    section, spec = config["isotropy"], config["runs"][run]
    batch = config["recipes"][spec["recipe"]]["batch_size"]
    work = section["M"] * (3 * batch + section["n_probe"]) * forward_flops(config, run)
    seconds = work / estimate_rate(config).train_flops + section["M"] * estimate_rate(config).step_seconds
    return {"runtime": minutes(config, seconds), "mem_mb": int(BASE_MEMORY_MB + _data_mb(config, run))}


def phase_cell_resources(config: Config) -> dict[str, int]:
    """One phase-sweep cell: every seed of the deep BN MLP on the training subset."""
    section = config["phase"]
    shape, _ = dataset_shape(config["datasets"][section["dataset"]])
    side = section["image_size"]
    inputs = math.prod(shape) if side is None or len(shape) == 1 else shape[0] * side * side
    flops = 2 * (inputs * section["width"] + section["n_hidden"] * section["width"] ** 2)
    n_train, rate = section["n_train"], estimate_rate(config)
    steps = len(section["seeds"]) * section["epochs"] * math.ceil(n_train / section["batch_size"])
    work = len(section["seeds"]) * section["epochs"] * 4 * n_train * flops
    return {"runtime": minutes(config, work / rate.train_flops + steps * rate.step_seconds), "mem_mb": 4000}
