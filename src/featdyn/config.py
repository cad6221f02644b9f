"""Semantic checks of the workflow config (beyond the JSON schema) and config → object helpers.

`check_config` runs when the Snakefile is parsed, before any job: every error names the offending
key and the values it may take.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from featdyn.corrupt import CIFAR_C_ALL, corruption_names
from featdyn.corrupted import CIFAR_C_RELEASES
from featdyn.data import EMBEDDED, SOURCES, TORCHVISION, corrupted_set_name
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
    check_dynamics(config)
    check_isotropy(config)
    for key, depths in depth_lists(config):
        section = key.split(".")[0]
        for run_name in analysed_runs(config, section):
            _one_of(f"{section}.runs", run_name, sorted(runs))
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
    check_corruptions(config)
    check_separation_phase(config)


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


def available_corruptions(source: str) -> list[str]:
    """Corruptions a dataset source offers: the CIFAR-C release files for CIFAR-10/100, else local ones."""
    if source in CIFAR_C_RELEASES:
        return list(CIFAR_C_ALL)
    return corruption_names("signal" if len(SAMPLE_SHAPES[source]) == 1 else "image")


def dataset_corruptions(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Corruptions in a dataset's -c.h5 file: its own list, else the default list, else all available."""
    section = config.get("corruptions") or {}
    names = (section.get("datasets") or {}).get(dataset) or section.get("default")
    return list(names) if names else available_corruptions(config["datasets"][dataset]["source"])


def corrupted_eval_sets(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Evaluation-set names `<corruption>-<severity>` of every corrupted test set of a dataset."""
    severities = (config.get("corruptions") or {}).get("severities", [5])
    return [corrupted_set_name(n, s) for n in dataset_corruptions(config, dataset) for s in severities]


def check_eval_set(key: str, name: str, config: Mapping[str, Any], dataset: str) -> None:
    _one_of(key, name, ["test", "train", *corrupted_eval_sets(config, dataset)])


def check_corruptions(config: Mapping[str, Any]) -> None:
    """Corruption names per dataset, corrupted evaluation sets, and the clean vs. noisy statistics."""
    datasets, runs = config.get("datasets", {}), config.get("runs", {})
    section = config.get("corruptions") or {}
    own = section.get("datasets") or {}
    for dataset in own:
        _one_of("corruptions.datasets", dataset, sorted(datasets))
    for dataset, options in datasets.items():
        key = f"corruptions.datasets.{dataset}" if own.get(dataset) else "corruptions.default"
        for name in dataset_corruptions(config, dataset):
            _one_of(key, name, available_corruptions(options["source"]))
    for eval_set in config.get("composite", {}).get("eval_sets", []):
        for run in analysed_runs(config, "composite"):
            check_eval_set("composite.eval_sets", eval_set, config, runs[run]["dataset"])
    stats = config.get("stats") or {}
    for name, pair in config.get("pairs", {}).items():
        dataset = runs[pair["clean"]]["dataset"]
        if runs[pair["noisy"]]["dataset"] != dataset:
            _fail(f"pairs.{name}", f"runs {pair['clean']!r} and {pair['noisy']!r} must use the same dataset")
        for eval_set in stats.get("eval_sets", []):
            check_eval_set("stats.eval_sets", eval_set, config, dataset)
        if stats.get("figure_eval_set"):
            check_eval_set("stats.figure_eval_set", stats["figure_eval_set"], config, dataset)
        for corruption in stats.get("figure_corruptions") or []:
            _one_of("stats.figure_corruptions", corruption, dataset_corruptions(config, dataset))
    severities = section.get("severities", [5])
    if stats.get("figure_severity", severities[-1]) not in severities:
        _fail(
            "stats.figure_severity",
            f"{stats['figure_severity']} is not among corruptions.severities {severities}",
        )
    band = config.get("composite", {}).get("window")
    if band is not None and stats.get("window", 1) > band:
        _fail("stats.window", f"{stats['window']} is not allowed: at most composite.window = {band}")


def check_separation_phase(config: Mapping[str, Any]) -> None:
    """Paper 2: runs of `separation`, the phase sweep's dataset and batch sizes (SPEC §9)."""
    for run in (config.get("separation") or {}).get("runs") or []:
        _one_of("separation.runs", run, sorted(config.get("runs", {})))
    phase = config.get("phase") or {}
    _one_of("phase.dataset", phase.get("dataset", "auto"), ["auto", *sorted(config["datasets"]), *SOURCES])
    n_train = phase.get("n_train", 2560)
    for size in [phase.get("batch_size", n_train), *(phase.get("axes") or {}).get("batch_size", [])]:
        if size > n_train:
            _fail("phase.axes.batch_size", f"{size} is not allowed: at most phase.n_train = {n_train}")


def check_dynamics(config: Mapping[str, Any]) -> None:
    """Runs, depths and epochs of the feature-dynamics and interventions sections (SPEC §5-7)."""
    datasets, runs = config.get("datasets", {}), config.get("runs", {})
    dynamics, interventions = config.get("dynamics") or {}, config.get("interventions") or {}
    trajectories, pca = dynamics.get("trajectories") or {}, dynamics.get("pca") or {}
    for key, names in (
        ("dynamics.runs", dynamics.get("runs") or []),
        ("dynamics.trajectories.runs", trajectories.get("runs", [])),
        ("dynamics.pca.runs", pca.get("runs", [])),
        ("interventions.runs", interventions.get("runs") or []),
    ):
        for name in names:
            _one_of(key, name, sorted(runs))
    for key, depth, names in (
        ("dynamics.trajectories.depth", trajectories.get("depth", 2), trajectories.get("runs", [])),
        ("dynamics.pca.depth", pca.get("depth", 2), pca.get("runs", [])),
    ):
        for name in names:
            _check_depth(key, depth, name, runs[name], datasets)
    for name in trajectories.get("runs", []):
        size = feature_size(runs[name], datasets, trajectories.get("depth", 2))
        if size != 2:
            _fail(
                "dynamics.trajectories.runs",
                f"run {name!r} has {size} feature values at depth {trajectories.get('depth', 2)}, not 2: "
                "trajectories need a 2-D feature (model 'bottleneck_mlp' at depth 2)",
            )
    for name in pca.get("runs", []) if pca.get("reference_epoch") is not None else []:
        _check_saved_epoch("dynamics.pca.reference_epoch", pca["reference_epoch"], name, runs[name], True)
    if interventions:
        for name in analysed_runs(config, "interventions"):
            for depth in interventions.get("reinit_depths", []):
                _check_depth("interventions.reinit_depths", depth, name, runs[name], datasets)
            _check_saved_epoch("interventions.freeze_epoch", interventions["freeze_epoch"], name, runs[name])


def check_isotropy(config: Mapping[str, Any]) -> None:
    """Runs and checkpoint epochs of the SGD-noise anisotropy section (SPEC §4)."""
    from featdyn.isotropy import run_isotropy_epochs

    section, runs = config.get("isotropy") or {}, config.get("runs", {})
    for name in section.get("runs") or []:
        _one_of("isotropy.runs", name, sorted(runs))
    for name in analysed_runs(config, "isotropy") if section else []:
        for epoch in section.get("epochs") or []:
            _check_saved_epoch("isotropy.epochs", epoch, name, runs[name], last_ok=True)
        if section.get("figure_epoch") is not None:
            _one_of("isotropy.figure_epoch", section["figure_epoch"], run_isotropy_epochs(config, name))


def _check_depth(
    key: str, depth: int, name: str, run: Mapping[str, Any], datasets: Mapping[str, Any]
) -> None:
    n = n_stages(run, datasets)
    if not 1 <= depth < n:
        _fail(key, f"depth {depth} does not exist for run {name!r} ({run['model']!r}); allowed: 1..{n - 1}")


def _check_saved_epoch(
    key: str, epoch: int, name: str, run: Mapping[str, Any], last_ok: bool = False
) -> None:
    """`epoch` must be saved by the run (0, a multiple of save_every, or the last) and, unless
    `last_ok`, come before the last epoch."""
    epochs, every = int(run["epochs"]), int(run.get("save_every", 1))
    saved = epoch == epochs or (0 <= epoch < epochs and epoch % every == 0)
    if not saved or (epoch == epochs and not last_ok):
        allowed = f"at most {epochs}" if last_ok else f"before the last epoch {epochs}"
        _fail(key, f"{epoch} is not allowed for run {name!r}: a saved epoch (save_every = {every}) {allowed}")


def feature_size(run: Mapping[str, Any], datasets: Mapping[str, Any], depth: int) -> int:
    """Number of values of the feature at split depth `depth` of a run's model, per sample."""
    import torch

    source = datasets[run["dataset"]]["source"]
    model = build_model(run["model"], SAMPLE_SHAPES[source], CLASSES[source], **run.get("model_options", {}))
    with torch.no_grad():
        return model.eval()(torch.zeros(1, *SAMPLE_SHAPES[source]), 0, depth)[0].numel()


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
