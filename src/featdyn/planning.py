"""Workflow planning: from an effective config (defaults filled) to the runs, epochs, depths and files
each stage analyses. The rules in `workflow/rules/` compute their targets and inputs with these
functions and nothing else; `featdyn.config` uses them to check a config before any job runs.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from featdyn.checkpoints import strided_epochs
from featdyn.corruptions import CIFAR_C_ALL, CIFAR_C_RELEASES, corruption_names
from featdyn.data import (
    DEBIAN_DATASET_DIRS,
    TORCHVISION,
    corrupted_set_name,
    describe_dataset,
)
from featdyn.mislabel import score_names
from featdyn.models import Staged, build_model
from featdyn.phase import CellSettings, cell_file_stem, cell_settings
from featdyn.train import TrainSpec

Config = Mapping[str, Any]

# --- runs and their models ------------------------------------------------------------------------


def is_imported(run: Mapping[str, Any]) -> bool:
    """Whether a run is imported from outside checkpoints (`checkpoints`) instead of trained."""
    return run["checkpoints"] is not None


def not_analysable(config: Config, section: Sequence[str], name: str) -> str | None:
    """Why `section` cannot analyse run `name` (None when it can): isotropy needs the learning rate and
    batch size of a recipe; interventions continue featdyn's own training (optimizer state, data order)."""
    run = config["runs"][name]
    if tuple(section) == ("isotropy",) and is_imported(run) and "recipe" not in run:
        return "it is imported without a `recipe` (the learning rate and batch size of the SGD steps)"
    if tuple(section) == ("interventions",) and is_imported(run):
        return (
            "it is imported: continuations replay featdyn's own training (optimizer state, data order), "
            "which an imported run does not have"
        )
    return None


def analysed_runs(config: Config, *section: str) -> list[str]:
    """Runs of an analysis section (e.g. `"composite"` or `"dynamics", "pca"`): its `runs` list, or
    when it is null every run the section can analyse (`not_analysable`); `[]` analyses none."""
    node = config
    for key in section:
        node = node[key]
    if node["runs"] is not None:
        return list(node["runs"])
    return [name for name in config["runs"] if not_analysable(config, section, name) is None]


def dataset_shape(entry: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(sample shape, classes) of a `datasets` entry (`describe_dataset`), once per distinct entry."""
    return _described(json.dumps(entry, sort_keys=True))


@functools.cache
def _described(entry_json: str) -> tuple[tuple[int, ...], int]:
    shape, classes = describe_dataset(json.loads(entry_json))
    return tuple(shape), int(classes)


def run_model(run: Mapping[str, Any], datasets: Mapping[str, Any]) -> Staged:
    """A freshly initialised model of a run, for its dataset's sample shape and classes."""
    shape, classes = dataset_shape(datasets[run["dataset"]])
    return build_model(run["model"], shape, classes, **run["model_options"])


@dataclass(frozen=True)
class ModelStructure:
    """What the planning needs of a run's model: its stage names and the feature size at each depth."""

    stage_names: tuple[str, ...]
    feature_sizes: tuple[int, ...]
    """Values per sample of the feature at depth d = 1..K-1 (index d - 1)."""


def model_structure(run: Mapping[str, Any], datasets: Mapping[str, Any]) -> ModelStructure:
    """The `ModelStructure` of a run's model, built once per distinct (model, options, dataset)."""
    key = {k: run[k] for k in ("model", "model_options")} | {"dataset": datasets[run["dataset"]]}
    return _structure(json.dumps(key, sort_keys=True))


@functools.cache
def _structure(key_json: str) -> ModelStructure:
    import torch

    key = json.loads(key_json)
    model = run_model({**key, "dataset": "dataset"}, {"dataset": key["dataset"]}).eval()
    shape, _ = dataset_shape(key["dataset"])
    sizes, h = [], torch.zeros(1, *shape)
    with torch.no_grad():
        for depth in range(1, model.n_stages):
            h = model(h, depth - 1, depth)
            sizes.append(h[0].numel())
    return ModelStructure(tuple(model.stage_names), tuple(sizes))


def n_stages(run: Mapping[str, Any], datasets: Mapping[str, Any]) -> int:
    return len(model_structure(run, datasets).stage_names)


def feature_size(run: Mapping[str, Any], datasets: Mapping[str, Any], depth: int) -> int:
    """Number of values of the feature at split depth `depth` of a run's model, per sample."""
    return model_structure(run, datasets).feature_sizes[depth - 1]


def stage_labels(config: Config, run: str) -> dict[int, str]:
    """Stage i = 1..K of a run's model → `i (name)`, e.g. `3 (block1.2)`: how figures label split depth
    d (its shallow part ends with stage d), separation layer l (the output of stage l) and the
    parameters of stage i."""
    names = model_structure(config["runs"][run], config["datasets"]).stage_names
    return {i: f"{i} ({name})" for i, name in enumerate(names, start=1)}


def trajectory_runs(config: Config) -> list[str]:
    """Runs of the trajectory figure: `dynamics.trajectories.runs`, or every run with a 2-D feature."""
    section = config["dynamics"]["trajectories"]
    if section["runs"] is not None:
        return list(section["runs"])
    depth, datasets = section["depth"], config["datasets"]
    return [
        name
        for name, run in config["runs"].items()
        if depth < n_stages(run, datasets) and feature_size(run, datasets, depth) == 2
    ]


def saved_epochs(config: Config, run: str) -> list[int]:
    """The epochs in a run's checkpoint store: those a trained run saves (0, every `save_every`-th,
    the last), or those imported (`imported_epochs`)."""
    run_config = config["runs"][run]
    if is_imported(run_config):
        return imported_epochs(run_config)
    return TrainSpec.from_config(run_config, config["recipes"][run_config["recipe"]]).saved_epochs()


def imported_epochs(run: Mapping[str, Any]) -> list[int]:
    """The epochs an imported run imports: its `checkpoint_epochs`, else every epoch whose file the
    `checkpoints` pattern, glob or folder finds (`featdyn.importing.discover_checkpoints`)."""
    from featdyn.importing import discover_checkpoints  # reads checkpoint files: torch, h5py

    if run["checkpoint_epochs"] is not None:
        return sorted(run["checkpoint_epochs"])
    return list(discover_checkpoints(run["checkpoints"]))


def trained_runs(config: Config) -> list[str]:
    """Runs featdyn trains (rule `train`)."""
    return [name for name, run in config["runs"].items() if not is_imported(run)]


def imported_runs(config: Config) -> list[str]:
    """Runs imported from outside checkpoints (rule `import_run`)."""
    return [name for name, run in config["runs"].items() if is_imported(run)]


def imported_files(config: Config, run: str) -> list[str]:
    """The checkpoint files an imported run reads, in epoch order (the import job's inputs)."""
    from featdyn.importing import discover_checkpoints

    found = discover_checkpoints(config["runs"][run]["checkpoints"])
    return [str(found[epoch]) for epoch in imported_epochs(config["runs"][run])]


def name_pattern(names: Sequence[str]) -> str:
    """A regular expression matching exactly `names` (and nothing when there are none): the `run`
    wildcard constraint that keeps rules `train` and `import_run` apart."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def wants_gpu(config: Config) -> bool:
    """Whether training-type rules should ask for a GPU (`device: cuda`, or `auto` with a driver)."""
    device = config["device"]
    return device == "cuda" or (device == "auto" and shutil.which("nvidia-smi") is not None)


def freeze_epoch(config: Config, run: str) -> int:
    """Epoch the freezing continuations start from: `interventions.freeze_epoch`, else the saved epoch
    nearest 3/4 of the run (paper 1: 150 of 200), before the last one."""
    chosen = config["interventions"]["freeze_epoch"]
    if chosen is not None:
        return chosen
    candidates = saved_epochs(config, run)[:-1]
    target = 0.75 * config["runs"][run]["epochs"]
    return min(candidates, key=lambda epoch: (abs(epoch - target), epoch))


# --- composite files ------------------------------------------------------------------------------


def composite_file(run: str, eval_set: str, depth: int) -> str:
    return f"results/runs/{run}/composite/{eval_set}_d{depth}.h5"


def composite_keys(
    config: Config, runs: Sequence[str], eval_sets: Sequence[str], figure_only: bool = False
) -> list[tuple[str, str, int]]:
    """(run, eval set, depth) of every composite file, in a fixed order: each run's composite depths
    (`run_depths`), or with `figure_only` its figure depth alone."""
    keys = []
    for r in runs:
        depths = [figure_depth(config, r)] if figure_only else run_depths(config, "composite", r)
        keys += [(r, e, d) for e in eval_sets for d in depths]
    return keys


def figure_depth(config: Config, run: str) -> int:
    """Depth of a run in the forgetting, transferability and KDE figures: `composite.figure_depth` for
    runs without depths of their own, else the middle of the run's composite depths."""
    depths = run_depths(config, "composite", run)
    chosen = config["composite"]["figure_depth"]
    return depths[len(depths) // 2] if chosen is None or has_own_depths(config, "composite", run) else chosen


def figure_depth_labels(config: Config, runs: Sequence[str]) -> dict[str, str]:
    """Run → `run, depth 3 (block1.2)`: the runs of the figures drawn at each run's figure depth."""
    return {r: f"{r}, depth {stage_labels(config, r)[figure_depth(config, r)]}" for r in runs}


# --- split depths per run -------------------------------------------------------------------------

DEPTH_SECTIONS: dict[str, tuple[str, str]] = {
    "composite": ("composite", "depths"),
    "isotropy": ("isotropy", "depths"),
    "dynamics": ("dynamics", "depths"),
    "interventions": ("interventions", "depths"),
    "reinit": ("interventions", "reinit_depths"),
}
"""Depth lists a run's `depths` overrides: name → (config section, key)."""


def has_own_depths(config: Config, section: str, run: str) -> bool:
    """Whether run `run` sets its own depths for `section` (a list for all, or a per-section entry)."""
    own = config["runs"][run]["depths"]
    return own is not None and (isinstance(own, list) or section in own)


def run_depths(config: Config, section: str, run: str) -> list[int]:
    """The split depths `section` (a key of `DEPTH_SECTIONS`) analyses for `run`: the run's own
    `depths` (one list for every section, or a mapping section → list), else the section's list.
    Every rule and check reads depths through this function."""
    if has_own_depths(config, section, run):
        own = config["runs"][run]["depths"]
        return list(own if isinstance(own, list) else own[section])
    part, key = DEPTH_SECTIONS[section]
    return list(config[part][key])


def dataset_files(config: Config, dataset: str) -> list[str]:
    """Files a dataset is read from that the workflow should watch: an `arrays` source's .npz (a change
    refetches it and reruns what depends on it); nothing for generated or downloaded sources, and
    nothing for an image folder (a tree, whose contents Snakemake does not track)."""
    entry = config["datasets"][dataset]
    return [entry["path"]] if entry["source"] == "arrays" else []


# --- corrupted test sets --------------------------------------------------------------------------


def available_corruptions(entry: Mapping[str, Any]) -> list[str]:
    """Corruptions a `datasets` entry offers: the CIFAR-C release files for CIFAR-10/100, else the local
    ones of its kind of input (images (C, H, W), or signals)."""
    if entry["source"] in CIFAR_C_RELEASES:
        return list(CIFAR_C_ALL)
    return corruption_names("image" if len(dataset_shape(entry)[0]) == 3 else "signal")


def dataset_corruptions(config: Config, dataset: str) -> list[str]:
    """Corruptions in a dataset's -c.h5 file: its own list, else the default list, else all available."""
    section = config["corruptions"]
    names = section["datasets"][dataset] if dataset in section["datasets"] else section["default"]
    return list(names) if names else available_corruptions(config["datasets"][dataset])


def corrupted_eval_sets(config: Config, dataset: str) -> list[str]:
    """Evaluation-set names `<corruption>-<severity>` of every corrupted test set of a dataset."""
    severities = config["corruptions"]["severities"]
    return [corrupted_set_name(n, s) for n in dataset_corruptions(config, dataset) for s in severities]


# --- clean vs. noisy consistency ------------------------------------------------------------------

FIGURE_KINDS = ("noisy", "corruptions")
ConsistencyKey = tuple[str, str, str, str, int]
"""(pair, condition, run, eval set, depth) of a composite file the statistics read."""


def figure_eval_sets(config: Config, pair: str, kind: str) -> list[str]:
    """Panels of a clean vs. noisy figure. `noisy` (Fig. 7): the test set and `stats.figure_eval_set`;
    `corruptions` (Figs. 16/17): `stats.figure_corruptions` (null: every corruption of the pair's
    dataset) at `stats.figure_severity`."""
    stats = config["stats"]
    if kind == "noisy":
        return ["test"] + ([stats["figure_eval_set"]] if stats["figure_eval_set"] else [])
    dataset = config["runs"][config["pairs"][pair]["clean"]]["dataset"]
    names = stats["figure_corruptions"] or dataset_corruptions(config, dataset)
    return [corrupted_set_name(name, stats["figure_severity"]) for name in names]


def consistency_keys(config: Config) -> list[ConsistencyKey]:
    """Every composite file of the Welch tests: the `stats.eval_sets` at every composite depth of the
    pair's runs (the same for both, `featdyn.config` checks), for every pair, clean run first."""
    keys = []
    for pair, runs in config["pairs"].items():
        depths = run_depths(config, "composite", runs["clean"])
        tested = [(e, d) for e in config["stats"]["eval_sets"] for d in depths]
        keys += [(pair, side, runs[side], e, d) for side in ("clean", "noisy") for e, d in tested]
    return keys


def consistency_figure_keys(config: Config, pair: str, kind: str) -> list[ConsistencyKey]:
    """The composite files of one clean vs. noisy figure: its panels at the pair's figure depth."""
    runs = config["pairs"][pair]
    depth = figure_depth(config, runs["clean"])
    eval_sets = figure_eval_sets(config, pair, kind)
    return [(pair, side, runs[side], e, depth) for side in ("clean", "noisy") for e in eval_sets]


# --- SGD-noise anisotropy -------------------------------------------------------------------------


def checkpoint_epochs(saved: Sequence[int], epochs: Sequence[int], stride: int) -> list[int]:
    """The configured `epochs`, or when empty every `stride`-th saved epoch, ending at the last one."""
    return sorted(epochs) if epochs else strided_epochs(saved, stride)


def isotropy_epochs(config: Config, run: str) -> list[int]:
    """Checkpoint epochs the `isotropy` section analyses for `run` (its `epochs`, or a stride)."""
    section = config["isotropy"]
    return checkpoint_epochs(saved_epochs(config, run), section["epochs"], section["stride"])


def isotropy_keys(config: Config, figure_only: bool = False) -> list[tuple[str, int, int]]:
    """(run, epoch, depth) of every isotropy file, in a fixed order; with `figure_only`, only the
    spectrum figure's epoch (`figure_epoch`, else each run's last analysed epoch)."""
    section = config["isotropy"]
    keys = []
    for run in analysed_runs(config, "isotropy"):
        epochs = isotropy_epochs(config, run)
        if figure_only:
            epochs = [epochs[-1] if section["figure_epoch"] is None else section["figure_epoch"]]
        keys += [(run, epoch, depth) for epoch in epochs for depth in run_depths(config, "isotropy", run)]
    return keys


def memory_depths(config: Config, run: str) -> list[int]:
    """The isotropy depths whose memory window the composite stage computes for `run` (maybe none)."""
    if run not in analysed_runs(config, "composite"):
        return []
    composite = run_depths(config, "composite", run)
    return [d for d in run_depths(config, "isotropy", run) if d in composite]


# --- mislabelled training samples -----------------------------------------------------------------


def mislabel_runs(config: Config) -> list[str]:
    """Runs the `mislabel` section scores: its `runs`, or when null every run with label noise."""
    runs = config["mislabel"]["runs"]
    if runs is not None:
        return list(runs)
    return [name for name, run in config["runs"].items() if run["label_noise"] > 0]


def mislabel_reference_epochs(config: Config, run: str) -> list[int]:
    """Reference epochs t of a run's loss and consistency scores: configured, else its last epoch."""
    return list(config["mislabel"]["reference_epochs"]) or [config["runs"][run]["epochs"]]


def mislabel_score_names(config: Config, run: str) -> list[str]:
    """The score columns of a run's sample table (without the never-learned flag)."""
    section = config["mislabel"]
    return score_names(mislabel_reference_epochs(config, run), section["depths"], section["windows"])


def retrain_epochs(config: Config, run: str) -> int:
    """Epochs of the filtered and oracle retrains of a run: `mislabel.retrain.epochs`, else the run's."""
    chosen = config["mislabel"]["retrain"]["epochs"]
    return config["runs"][run]["epochs"] if chosen is None else chosen


def mislabel_scores_file(run: str) -> str:
    return f"results/runs/{run}/mislabel/scores.tsv"


def retrain_runs(config: Config) -> list[str]:
    """Scored runs retrained without their most suspect samples: `mislabel.retrain.runs`, else all."""
    runs = config["mislabel"]["retrain"]["runs"]
    return mislabel_runs(config) if runs is None else list(runs)


def retrain_settings(config: Config, run: str, variant: str) -> dict[str, Any]:
    """What a retrain job reads: its epochs (`retrain.epochs`, else the run's) and the selection of the
    dropped samples (`featdyn.mislabel.retrain_drop`: for `filtered` the ranking score and fraction)."""
    section = config["mislabel"]["retrain"]
    selection = {"score": section["score"], "fraction": section["fraction"]} if variant == "filtered" else {}
    return {"epochs": retrain_epochs(config, run), "selection": selection}


def retrain_dir(run: str, variant: str) -> str:
    return f"results/runs/{run}/mislabel/{variant}"


# --- paper 2's phase sweep ------------------------------------------------------------------------

PHASE_FALLBACK_DATASET = "mnist1d"


def phase_grid(section: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """Every (axis, level, α) of the sweep configured in section `phase`, in config order."""
    return [
        (axis, float(level), float(alpha))
        for axis, levels in section["axes"].items()
        for level in levels
        for alpha in section["alphas"]
    ]


def locally_available(
    source: str, mirror_dirs: Sequence[str | os.PathLike], cache_dir: str | os.PathLike
) -> bool:
    """Whether every raw file of a torchvision dataset is on disk (mirrors, Debian's folder, the cache)."""
    if source not in TORCHVISION:
        return False
    spec = TORCHVISION[source]
    folders = [Path(d) / source for d in mirror_dirs] + [Path(d) for d in mirror_dirs]
    folders.append(Path(cache_dir) / source / spec.raw_subdir)
    if source in DEBIAN_DATASET_DIRS:
        folders.append(Path(DEBIAN_DATASET_DIRS[source]))
    return any(all((folder / name).is_file() for name in spec.raw_files) for folder in folders)


def dataset_key(datasets: Mapping[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The `datasets` key and entry (without defaults filled) that a section names: a key, or a source
    (the first key with that source, else a new entry named after it)."""
    if name in datasets:
        return name, dict(datasets[name])
    same_source = [key for key, entry in datasets.items() if entry["source"] == name]
    return (same_source[0], dict(datasets[same_source[0]])) if same_source else (name, {"source": name})


def phase_dataset(config: Config) -> tuple[str, dict[str, Any]]:
    """The dataset key of the phase sweep and its `datasets` entry (without defaults filled).

    `phase.dataset` is a key of `datasets`, a source name, or `auto`: Fashion-MNIST if its raw files are on
    disk (mirror_dirs, Debian's /usr/share/datasets, cache_dir), else MNIST-1D.
    """
    name = config["phase"]["dataset"]
    if name == "auto":
        offline = locally_available("fashion_mnist", config["mirror_dirs"], config["cache_dir"])
        name = "fashion_mnist" if offline else PHASE_FALLBACK_DATASET
    return dataset_key(config["datasets"], name)


def section_dataset(config: Config, section: str) -> tuple[str, dict[str, Any]]:
    """The dataset key and entry of a section with a `dataset` key (`phase`, `guided`, `regression`)."""
    if section == "phase":
        return phase_dataset(config)
    return dataset_key(config["datasets"], config[section]["dataset"])


DATASET_SECTIONS = ("phase", "guided", "regression")
"""Sections that name one dataset (a key or a source) rather than runs."""


def overlays(section: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """Name → `section` with the changes listed under `section[key]` (e.g. `trainings`, `variants`); a
    name whose changes are null (removed by a preset) is left out."""
    return {name: {**section, **changes} for name, changes in section[key].items() if changes is not None}


# --- variants of the phase sweep (SM Figs. S5-S7) -------------------------------------------------


def variant_suffix(name: str) -> str:
    """File-name suffix of a phase-sweep variant: `-<name>`, or empty for the sweep itself (name "")."""
    return f"-{name}" if name else ""


def phase_variants(section: Mapping[str, Any]) -> list[str]:
    """File-name suffixes of the sweep ("") and of every variant in `phase.variants`."""
    return ["", *(variant_suffix(name) for name in overlays(section, "variants"))]


def phase_variant(section: Mapping[str, Any], suffix: str) -> dict[str, Any]:
    """The `phase` section of the sweep with suffix `suffix` ("" = the section itself)."""
    if not suffix:
        return dict(section)
    name, variants = suffix.removeprefix("-"), overlays(section, "variants")
    if name not in variants:
        raise ValueError(f"unknown phase variant {name!r}; available: {sorted(variants)}")
    return variants[name]


def phase_cell_settings(section: Mapping[str, Any], suffix: str, cell: str = "base") -> CellSettings:
    """The settings of cell `cell` (`base` or `{axis}-{level}`) of the sweep with suffix `suffix`."""
    variant = phase_variant(section, suffix)
    return cell_settings(CellSettings(**{f.name: variant[f.name] for f in fields(CellSettings)}), cell)


def phase_cell_file(section: Mapping[str, Any], suffix: str, axis: str, level: float, alpha: float) -> str:
    """`results/phase/cells{suffix}/{stem}.h5` of a cell; levels at the base recipe share one `base` cell."""
    stem = cell_file_stem(phase_cell_settings(section, suffix), axis, level, alpha)
    return f"results/phase/cells{suffix}/{stem}.h5"


def phase_cell_files(section: Mapping[str, Any], suffix: str) -> list[str]:
    """The cell file of every (axis, level, α) of the sweep with suffix `suffix`, in `phase_grid` order."""
    return [phase_cell_file(section, suffix, *key) for key in phase_grid(phase_variant(section, suffix))]


def phase_figure_cells(section: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(axis, level, α) of the train vs test and two-metric figures: every level of `figure_axis`
    (null: the first axis) at `figure_alpha` (null: the first α), in the sweep itself."""
    axis = section["figure_axis"] or next(iter(section["axes"]))
    alpha = section["alphas"][0] if section["figure_alpha"] is None else section["figure_alpha"]
    return [(axis, float(level), float(alpha)) for level in section["axes"][axis]]


# --- generalization surrogates and temporal ensembles (definitions §12, §13) ----------------------


def surrogate_epochs(config: Config, run: str) -> list[int]:
    """Reference epochs t of the `surrogates` section for `run`: its `epochs`, else every `stride`-th
    saved epoch ending at the last, without epoch 0 (an untrained network has no gap to explain)."""
    section = config["surrogates"]
    chosen = checkpoint_epochs(saved_epochs(config, run), section["epochs"], section["stride"])
    return chosen if section["epochs"] else [epoch for epoch in chosen if epoch > 0]


def surrogate_keys(config: Config) -> list[tuple[str, int]]:
    """(run, depth) of every surrogate job, in a fixed order."""
    return [
        (run, depth)
        for run in analysed_runs(config, "surrogates")
        for depth in config["surrogates"]["depths"]
    ]


def surrogate_figure_depth(config: Config) -> int:
    """Depth of the gap-vs-surrogate figure: `surrogates.figure_depth`, else the middle of `depths`."""
    section = config["surrogates"]
    depths = section["depths"]
    return depths[len(depths) // 2] if section["figure_depth"] is None else section["figure_depth"]


def surrogate_figure_window(config: Config) -> int:
    """Window of the gap-vs-surrogate figure: `surrogates.figure_window`, else the largest window."""
    section = config["surrogates"]
    return max(section["windows"]) if section["figure_window"] is None else section["figure_window"]


def ensemble_epoch(config: Config, run: str) -> int:
    """Reference epoch of the `ensembles` section for `run`: its `epoch`, else the last saved epoch."""
    chosen = config["ensembles"]["epoch"]
    return saved_epochs(config, run)[-1] if chosen is None else chosen


def ensemble_corrupted_file(config: Config, run: str) -> list[str]:
    """The run's `{dataset}-c.h5` when an `ensembles.eval_sets` entry is a corrupted set, else nothing."""
    eval_sets = config["ensembles"]["eval_sets"]
    if all(name == "test" for name in eval_sets):
        return []
    return [f"results/data/{config['runs'][run]['dataset']}-c.h5"]
