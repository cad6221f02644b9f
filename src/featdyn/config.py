"""Semantic checks of the workflow config (beyond the JSON schema) and config → object helpers.

`check_config` runs when the Snakefile is parsed, before any job: every error names the offending
key and the values it may take.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from featdyn.data import EMBEDDED, SOURCES, TORCHVISION
from featdyn.models import MODELS, build_model

SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "svhn": (3, 32, 32),
    "stl10": (3, 96, 96),
    "mnist1d": (40,),
    "digits": (1, 8, 8),
}
CLASSES = {**{k: v.classes for k, v in TORCHVISION.items()}, **EMBEDDED}


class ConfigError(ValueError):
    """An invalid config, reported before any job runs."""


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key `{key}`: {message}")


def _one_of(key: str, value: Any, allowed: list[str]) -> None:
    if value not in allowed:
        _fail(key, f"{value!r} is not one of the allowed values {allowed}")


def check_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError on the first semantic problem (unknown names, ranges, depths)."""
    datasets, recipes, runs = config.get("datasets", {}), config.get("recipes", {}), config.get("runs", {})
    _one_of("device", config.get("device", "auto"), ["auto", "cpu", "cuda"])
    for name, ds in datasets.items():
        _one_of(f"datasets.{name}.source", ds.get("source"), SOURCES)
    for name, recipe in recipes.items():
        _one_of(f"recipes.{name}.optimizer", recipe.get("optimizer", "sgd"), ["adam", "sgd"])
    if not runs:
        _fail("runs", "at least one run is needed")
    for name, run in runs.items():
        check_run(f"runs.{name}", run, datasets, recipes)
    for key, depths in depth_lists(config):
        for run_name in analysed_runs(config, key.split(".")[0]):
            n = n_stages(runs[run_name], datasets)
            for d in depths:
                if not 1 <= d < n:
                    _fail(
                        key,
                        f"depth {d} does not exist for run {run_name!r} "
                        f"(model {runs[run_name]['model']!r}); allowed depths: 1..{n - 1}",
                    )
    for name, pair in config.get("pairs", {}).items():
        for side in ("clean", "noisy"):
            _one_of(f"pairs.{name}.{side}", pair.get(side), sorted(runs))


def check_run(
    key: str, run: Mapping[str, Any], datasets: Mapping[str, Any], recipes: Mapping[str, Any]
) -> None:
    _one_of(f"{key}.dataset", run.get("dataset"), sorted(datasets))
    _one_of(f"{key}.model", run.get("model"), sorted(MODELS))
    _one_of(f"{key}.recipe", run.get("recipe"), sorted(recipes))
    noise = run.get("label_noise", 0.0)
    if not 0.0 <= noise < 1.0:
        _fail(f"{key}.label_noise", f"{noise} is outside the allowed range [0, 1)")
    if int(run.get("epochs", 0)) < 1:
        _fail(f"{key}.epochs", f"{run.get('epochs')} is not allowed: at least 1 epoch")
    if int(run.get("save_every", 1)) <= 0:
        _fail(f"{key}.save_every", f"{run.get('save_every')} is not allowed: a positive number of epochs")


def depth_lists(config: Mapping[str, Any]) -> list[tuple[str, list[int]]]:
    """Every (config key, list of split depths) the analyses use."""
    found = []
    for section in ("composite", "isotropy", "dynamics", "interventions"):
        depths = config.get(section, {}).get("depths")
        if depths:
            found.append((f"{section}.depths", list(depths)))
    return found


def analysed_runs(config: Mapping[str, Any], section: str) -> list[str]:
    """Runs an analysis section applies to: its `runs` list, or every run."""
    return list(config.get(section, {}).get("runs") or config.get("runs", {}))


def n_stages(run: Mapping[str, Any], datasets: Mapping[str, Any]) -> int:
    source = datasets[run["dataset"]]["source"]
    model = build_model(run["model"], SAMPLE_SHAPES[source], CLASSES[source], **run.get("model_options", {}))
    return model.n_stages


def wants_gpu(config: Mapping[str, Any]) -> bool:
    """Whether training-type rules should ask for a GPU (`device: cuda`, or `auto` with a driver)."""
    device = config.get("device", "auto")
    return device == "cuda" or (device == "auto" and shutil.which("nvidia-smi") is not None)


def torch_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device `cuda` but torch sees no CUDA device")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
