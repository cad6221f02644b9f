"""The workflow config: presets composed by `extends`, defaults from the schema, validation, checks.

Every key, its type, allowed values, default and description live in one file,
`workflow/schemas/config.schema.yaml`. A config file may name a base with `extends: <path>` (relative to
the file); mappings merge key by key and every other value replaces the base's. `effective_config`
turns what Snakemake read into the config every rule and script uses: composed, validated against the
schema (unknown keys rejected with the closest valid key suggested), defaults filled, and checked
semantically (`check_config`) — all before any job runs, each error naming the key and what it may be.

Print a run's effective config with `featdyn-config show [FILE]` (or `python -m featdyn.config show`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from featdyn.data import EXTERNAL_SOURCES, SAMPLE_SHAPES, SOURCES, is_external_source
from featdyn.importing import CheckpointImportError, check_external_checkpoints
from featdyn.models import MODELS, is_external_model
from featdyn.planning import (
    DATASET_SECTIONS,
    DEPTH_SECTIONS,
    analysed_runs,
    available_corruptions,
    corrupted_eval_sets,
    dataset_corruptions,
    dataset_shape,
    feature_size,
    figure_depth,
    has_own_depths,
    is_imported,
    isotropy_epochs,
    mislabel_runs,
    mislabel_score_names,
    model_structure,
    n_stages,
    not_analysable,
    overlays,
    run_depths,
    run_model,
    saved_epochs,
    section_dataset,
    surrogate_epochs,
    trajectory_runs,
)
from featdyn.springblock import noise_bound

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
ANALYSIS_RUN_LISTS = (
    ("composite",),
    ("isotropy",),
    ("dynamics",),
    ("dynamics", "trajectories"),
    ("dynamics", "pca"),
    ("interventions",),
    ("separation",),
    ("surrogates",),
    ("ensembles",),
    ("mislabel",),
)
"""Sections with a `runs` list (null = every run; for `mislabel`: every run with label noise)."""


class ConfigError(ValueError):
    """An invalid config, reported before any job runs."""


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key `{key}`: {message}")


def _one_of(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        _fail(key, f"{value!r} is not one of the allowed values {list(allowed)}")


# --- composing config files -----------------------------------------------------------------------


@functools.cache
def schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} does not hold a mapping of keys")
    return loaded


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` on `base`: mappings merge key by key, every other value replaces the base's."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def layered(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The config of a file with its `extends` chain merged under it (without `extends`)."""
    path = Path(path).resolve()
    if path in seen:
        raise ConfigError(f"config key `extends`: {path} extends itself (chain {[str(p) for p in seen]})")
    own = read_yaml(path)
    if "extends" not in own:
        return own
    base = layered(path.parent / own.pop("extends"), (*seen, path))
    return merge(base, own)


def compose(config: Mapping[str, Any], configfiles: Iterable[str | Path]) -> dict[str, Any]:
    """What Snakemake read (`config`: its config files merged, then `--config`), on the base that the
    last config file declaring `extends` names."""
    bases = [Path(f) for f in configfiles if "extends" in read_yaml(f)]
    if not bases:
        return {k: v for k, v in config.items() if k != "extends"}
    declaring = bases[-1].resolve()
    base = layered(declaring.parent / read_yaml(declaring)["extends"], (declaring,))
    return merge(base, {k: v for k, v in config.items() if k != "extends"})


# --- schema: validation and defaults --------------------------------------------------------------


def validate(config: Mapping[str, Any]) -> None:
    """Raise ConfigError listing every schema violation, unknown keys with the closest valid key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError("\n".join(_describe(error) for error in errors))


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema["properties"])
        lines = []
        for key in sorted(set(error.instance) - set(allowed)):
            path = f"{where}.{key}" if where else key
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`? " if close else ""
            lines.append(f"config key `{path}`: unknown key; {hint}allowed keys here: {allowed}")
        return "\n".join(lines)
    return f"config key `{where or '(top level)'}`: {error.message}"


def fill_defaults(node: Any, node_schema: Mapping[str, Any]) -> None:
    """Set every missing key that has a schema default, recursively (in place)."""
    if not isinstance(node, dict):
        return
    properties = node_schema["properties"] if "properties" in node_schema else {}
    for key, sub in properties.items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            fill_defaults(node[key], sub)
    extra = node_schema["additionalProperties"] if "additionalProperties" in node_schema else None
    if isinstance(extra, Mapping):
        for key, value in node.items():
            if key not in properties:
                fill_defaults(value, extra)


def effective_config(config: Mapping[str, Any], configfiles: Iterable[str | Path] = ()) -> dict[str, Any]:
    """The config every rule and script reads: composed, validated, defaults filled, checked.

    The datasets of the sections that name one (`phase`, `guided`, `regression`) are resolved to
    `datasets` keys (`phase.dataset: auto` looks for Fashion-MNIST on disk) and added to `datasets` if
    the config does not hold them.
    """
    composed = compose(config, configfiles)
    validate(composed)
    fill_defaults(composed, schema())
    for section in DATASET_SECTIONS:
        allowed = (["auto"] if section == "phase" else []) + [*sorted(composed["datasets"]), *SOURCES]
        _one_of(f"{section}.dataset", composed[section]["dataset"], allowed)
        name, entry = section_dataset(composed, section)
        composed[section]["dataset"] = name
        if name not in composed["datasets"]:
            fill_defaults(entry, schema()["properties"]["datasets"]["additionalProperties"])
            composed["datasets"][name] = entry
    check_config(composed)
    return composed


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective config of a config file (with its `extends` chain) and optional overrides."""
    return effective_config(merge(read_yaml(path), overrides or {}), [path])


def dataset_entry(source: str, mirror_dirs: Sequence[str] = (), **options: Any) -> dict[str, Any]:
    """A `datasets` entry for `source` with the schema's defaults filled, plus the global `mirror_dirs`:
    what the download rule passes to `featdyn.data.fetch`."""
    entry = {"source": source, **options}
    fill_defaults(entry, schema()["properties"]["datasets"]["additionalProperties"])
    return {"mirror_dirs": list(mirror_dirs), **entry}


def job_settings(section: Mapping[str, Any], settings_class: type) -> dict[str, Any]:
    """The keys of a config section that a job's settings dataclass reads: a rule's `params`."""
    return {field.name: section[field.name] for field in dataclasses.fields(settings_class)}


# --- semantic checks ------------------------------------------------------------------------------


def check_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError on the first semantic problem (unknown names, depths, epochs, corruptions)."""
    datasets, runs = config["datasets"], config["runs"]
    for name, dataset in datasets.items():
        check_dataset(name, dataset)
    for name, run in runs.items():
        check_run(config, name, run)
    for section in ANALYSIS_RUN_LISTS:
        key = ".".join(section)
        node = config
        for part in section:
            node = node[part]
        for name in node["runs"] or []:
            _one_of(f"{key}.runs", name, sorted(runs))
            reason = not_analysable(config, section, name)
            if reason is not None:
                _fail(f"{key}.runs", f"run {name!r} cannot be analysed here: {reason}")
    check_depths(config)
    for section in ("surrogates", "ensembles"):  # section-wide depth lists (no per-run override)
        for name in analysed_runs(config, section):
            for depth in config[section]["depths"]:
                _check_depth(f"{section}.depths", depth, name, runs[name], datasets)
    for name, pair in config["pairs"].items():
        for side in ("clean", "noisy"):
            _one_of(f"pairs.{name}.{side}", pair[side], sorted(runs))
        if runs[pair["noisy"]]["dataset"] != runs[pair["clean"]]["dataset"]:
            _fail(f"pairs.{name}", f"runs {pair['clean']!r} and {pair['noisy']!r} must use the same dataset")
        sides = [(run_depths(config, "composite", r), figure_depth(config, r)) for r in pair.values()]
        if sides[0] != sides[1]:
            _fail(
                f"pairs.{name}",
                f"runs {pair['clean']!r} and {pair['noisy']!r} are compared depth by depth, but their "
                f"composite depths and figure depths differ: {sides[0]} and {sides[1]}",
            )
    check_corruptions(config)
    check_dynamics(config)
    check_isotropy(config)
    check_surrogates(config)
    check_ensembles(config)
    check_mislabel(config)
    check_phase(config)
    check_paper2_sections(config)


def even_images(shape: Sequence[int]) -> bool:
    """Whether samples of `shape` are (C, H, W) images with even H and W (the shape-keeping CNN)."""
    return len(shape) == 3 and shape[1] % 2 == 0 and shape[2] % 2 == 0


def check_dataset(name: str, entry: Mapping[str, Any]) -> None:
    """A built-in source, or an outside one whose files give a sample shape and classes now."""
    source = entry["source"]
    if not is_external_source(source):
        _one_of(f"datasets.{name}.source", source, [*SOURCES, *EXTERNAL_SOURCES])
        return
    try:
        shape, _ = dataset_shape(entry)
    except Exception as err:  # missing files, wrong layout, unreadable headers
        _fail(f"datasets.{name}", f"the {source!r} dataset cannot be read: {err}")
    normalize = entry["normalize"]
    if isinstance(normalize, Mapping):
        channels = shape[0] if len(shape) >= 2 else 1
        for stat in ("mean", "std"):
            values = normalize[stat] if isinstance(normalize[stat], list) else [normalize[stat]]
            if len(values) not in (1, channels):
                _fail(
                    f"datasets.{name}.normalize.{stat}",
                    f"{len(values)} values for inputs of shape {shape}: give one, or one per channel "
                    f"({channels})",
                )


def check_run(config: Mapping[str, Any], name: str, run: Mapping[str, Any]) -> None:
    """Dataset, model (outside models are built and their stages verified now), recipe, and for an
    imported run its checkpoint files (found, readable, the first one fitting the model)."""
    _one_of(f"runs.{name}.dataset", run["dataset"], sorted(config["datasets"]))
    if not is_external_model(run["model"]):
        _one_of(f"runs.{name}.model", run["model"], sorted(MODELS))
    try:
        model_structure(run, config["datasets"])
    except Exception as err:  # a factory, stage map or option that does not work
        _fail(f"runs.{name}.model", f"model {run['model']!r} cannot be built: {type(err).__name__}: {err}")
    if "recipe" in run:
        _one_of(f"runs.{name}.recipe", run["recipe"], sorted(config["recipes"]))
    if not is_imported(run):
        missing = [key for key in ("recipe", "epochs") if key not in run]
        if missing:
            _fail(f"runs.{name}", f"a trained run needs {missing}; or give `checkpoints` to import the run")
        return
    if "epochs" in run:
        _fail(
            f"runs.{name}.epochs",
            "imported runs take their epochs from the files (choose with `checkpoint_epochs`)",
        )
    if run["label_noise"]:
        _fail(
            f"runs.{name}.label_noise",
            "an imported run was trained on its dataset's labels (put noisy labels into the dataset instead)",
        )
    try:
        found = check_external_checkpoints(
            run["checkpoints"], run["checkpoint_epochs"], run_model(run, config["datasets"])
        )
    except (CheckpointImportError, OSError) as err:
        _fail(f"runs.{name}.checkpoints", str(err))
    if len(found) < 2:
        _fail(f"runs.{name}.checkpoints", f"found the epochs {list(found)}: the analyses need at least two")


def check_depths(config: Mapping[str, Any]) -> None:
    """Every depth of every run in every section with a depth list exists for the run's model."""
    runs, datasets = config["runs"], config["datasets"]
    for section, (part, key) in DEPTH_SECTIONS.items():
        for name in analysed_runs(config, part):
            where = f"runs.{name}.depths" if has_own_depths(config, section, name) else f"{part}.{key}"
            for depth in run_depths(config, section, name):
                _check_depth(where, depth, name, runs[name], datasets)
    chosen = config["composite"]["figure_depth"]
    for name in analysed_runs(config, "composite"):
        if chosen is not None and not has_own_depths(config, "composite", name):
            _check_depth("composite.figure_depth", chosen, name, runs[name], datasets)


def check_eval_set(key: str, name: str, config: Mapping[str, Any], dataset: str) -> None:
    _one_of(key, name, ["test", "train", *corrupted_eval_sets(config, dataset)])


def check_corruptions(config: Mapping[str, Any]) -> None:
    """Corruption names per dataset, corrupted evaluation sets, and the clean vs. noisy statistics."""
    datasets, runs, section = config["datasets"], config["runs"], config["corruptions"]
    for dataset in section["datasets"]:
        _one_of("corruptions.datasets", dataset, sorted(datasets))
    for dataset, options in datasets.items():
        key = f"corruptions.datasets.{dataset}" if dataset in section["datasets"] else "corruptions.default"
        for name in dataset_corruptions(config, dataset):
            _one_of(key, name, available_corruptions(options))
    for eval_set in config["composite"]["eval_sets"]:
        for run in analysed_runs(config, "composite"):
            check_eval_set("composite.eval_sets", eval_set, config, runs[run]["dataset"])
    stats = config["stats"]
    for pair in config["pairs"].values():
        dataset = runs[pair["clean"]]["dataset"]
        for eval_set in stats["eval_sets"]:
            check_eval_set("stats.eval_sets", eval_set, config, dataset)
        if stats["figure_eval_set"]:
            check_eval_set("stats.figure_eval_set", stats["figure_eval_set"], config, dataset)
        for corruption in stats["figure_corruptions"] or []:
            _one_of("stats.figure_corruptions", corruption, dataset_corruptions(config, dataset))
    _one_of("stats.figure_severity", stats["figure_severity"], section["severities"])
    band = config["composite"]["window"]
    if band is not None and stats["window"] > band:
        _fail("stats.window", f"{stats['window']} is not allowed: at most composite.window = {band}")


def check_phase(config: Mapping[str, Any]) -> None:
    """Paper 2's phase sweep and its variants: every batch size within the training subset; the
    figures' axis and slope in the sweep."""
    phase = config["phase"]
    variants = {"phase": phase, **{f"phase.variants.{k}": v for k, v in overlays(phase, "variants").items()}}
    for where, section in variants.items():
        sizes = section["axes"]["batch_size"] if "batch_size" in section["axes"] else []
        prefix = "phase" if where == "phase" else where
        for key, size in [("phase.batch_size", section["batch_size"])] + [
            (f"{prefix}.axes.batch_size", s) for s in sizes
        ]:
            if size > phase["n_train"]:
                _fail(key, f"{size} is not allowed: at most phase.n_train = {phase['n_train']}")
    if phase["figure_axis"] is not None:
        _one_of("phase.figure_axis", phase["figure_axis"], list(phase["axes"]))
    if phase["figure_alpha"] is not None:
        _one_of("phase.figure_alpha", phase["figure_alpha"], phase["alphas"])


def check_paper2_sections(config: Mapping[str, Any]) -> None:
    """Linear networks, the guided CNN, regression loads and the μ_r = 0 chain (paper 2, Figs. 5, S2, S12)."""
    for section in ("linear_nets", "regression"):
        if not overlays(config[section], "trainings"):
            _fail(f"{section}.trainings", "every training is null: at least one is needed")
    guided = config["guided"]
    source = config["datasets"][guided["dataset"]]["source"]
    if not even_images(SAMPLE_SHAPES[source]):
        allowed = sorted(name for name, shape in SAMPLE_SHAPES.items() if even_images(shape))
        _fail(
            "guided.dataset",
            f"{guided['dataset']!r} (source {source!r}, samples {SAMPLE_SHAPES[source]}) is not allowed: "
            f"the CNN needs images of even height and width; allowed sources: {allowed}",
        )
    sized = {"guided.batch_size": (guided["batch_size"], guided["n_train"], "guided.n_train")}
    for section, limit_key in (("linear_nets", "n_samples"), ("regression", "n_train")):
        for name, training in overlays(config[section], "trainings").items():
            own = "batch_size" in config[section]["trainings"][name]
            key = f"{section}.trainings.{name}.batch_size" if own else f"{section}.batch_size"
            sized[key] = (training["batch_size"], config[section][limit_key], f"{section}.{limit_key}")
    for key, (size, limit, limit_key) in sized.items():
        if size is not None and limit is not None and size > limit:
            _fail(key, f"{size} is not allowed: at most {limit_key} = {limit}")
    leftward, springs = config["springblock"]["leftward"], config["springblock"]
    bound = noise_bound(leftward["noise"], springs["truncation"])
    needed = 2 * bound * max(leftward["eps"])
    for mu_l in leftward["mu_l"]:
        if mu_l < needed:
            _fail(
                "springblock.leftward.mu_l",
                f"{mu_l} is not allowed: Eq. 8 needs μ_l >= 2 b max(ε) = {needed:g} "
                f"(b = {bound:g}, the bound of {leftward['noise']} noise), else blocks also move left",
            )


def check_dynamics(config: Mapping[str, Any]) -> None:
    """Depths and epochs of the feature-dynamics and interventions sections (definitions §5-7)."""
    datasets, runs = config["datasets"], config["runs"]
    trajectories, pca = config["dynamics"]["trajectories"], config["dynamics"]["pca"]
    for name in trajectory_runs(config):
        _check_depth("dynamics.trajectories.depth", trajectories["depth"], name, runs[name], datasets)
        size = feature_size(runs[name], datasets, trajectories["depth"])
        if size != 2:
            _fail(
                "dynamics.trajectories.runs",
                f"run {name!r} has {size} feature values at depth {trajectories['depth']}, not 2: "
                "trajectories need a 2-D feature (model 'bottleneck_mlp' at depth 2)",
            )
    for name in analysed_runs(config, "dynamics", "pca"):
        _check_depth("dynamics.pca.depth", pca["depth"], name, runs[name], datasets)
        if pca["reference_epoch"] is not None:
            _check_saved_epoch("dynamics.pca.reference_epoch", pca["reference_epoch"], name, config, True)
    interventions = config["interventions"]
    for name in analysed_runs(config, "interventions"):
        if interventions["freeze_epoch"] is not None:
            _check_saved_epoch("interventions.freeze_epoch", interventions["freeze_epoch"], name, config)


def check_isotropy(config: Mapping[str, Any]) -> None:
    """Checkpoint epochs of the SGD-noise anisotropy section (definitions §4)."""
    section = config["isotropy"]
    for name in analysed_runs(config, "isotropy"):
        for epoch in section["epochs"]:
            _check_saved_epoch("isotropy.epochs", epoch, name, config, last_ok=True)
        if section["figure_epoch"] is not None:
            _one_of("isotropy.figure_epoch", section["figure_epoch"], isotropy_epochs(config, name))


def check_surrogates(config: Mapping[str, Any]) -> None:
    """Reference epochs and figure choices of the generalization surrogates (definitions §12)."""
    section = config["surrogates"]
    for name in analysed_runs(config, "surrogates"):
        for epoch in section["epochs"]:
            _check_saved_epoch("surrogates.epochs", epoch, name, config, last_ok=True)
        if not surrogate_epochs(config, name):
            _fail("surrogates.stride", f"run {name!r} has no saved epoch after 0 to analyse")
    if section["figure_depth"] is not None:
        _one_of("surrogates.figure_depth", section["figure_depth"], section["depths"])
    if section["figure_window"] is not None:
        _one_of("surrogates.figure_window", section["figure_window"], section["windows"])


def check_ensembles(config: Mapping[str, Any]) -> None:
    """Reference epoch and evaluation sets of the temporal ensembles (definitions §13)."""
    section, runs = config["ensembles"], config["runs"]
    for name in analysed_runs(config, "ensembles"):
        if section["epoch"] is not None:
            _check_saved_epoch("ensembles.epoch", section["epoch"], name, config, last_ok=True)
        allowed = ["test", *corrupted_eval_sets(config, runs[name]["dataset"])]
        for eval_set in section["eval_sets"]:
            _one_of("ensembles.eval_sets", eval_set, allowed)


def check_mislabel(config: Mapping[str, Any]) -> None:
    """Scored runs with label noise, their depths and reference epochs, the retrained runs and the
    score names of the retrain and the figure (definitions §14)."""
    datasets, runs, section = config["datasets"], config["runs"], config["mislabel"]
    retrain = section["retrain"]
    scored = mislabel_runs(config)
    for name in scored:
        if runs[name]["label_noise"] == 0:
            _fail("mislabel.runs", f"run {name!r} has label_noise 0: no label is wrong, nothing to detect")
        for depth in section["depths"]:
            _check_depth("mislabel.depths", depth, name, runs[name], datasets)
        for epoch in section["reference_epochs"]:
            _check_saved_epoch("mislabel.reference_epochs", epoch, name, config, last_ok=True)
        for score in section["figure_scores"] or []:
            _one_of("mislabel.figure_scores", score, mislabel_score_names(config, name))
    for name in retrain["runs"] or []:
        _one_of("mislabel.retrain.runs", name, scored)
    for name in scored if retrain["runs"] is None else retrain["runs"]:
        _one_of("mislabel.retrain.score", retrain["score"], mislabel_score_names(config, name))
        epochs, most = retrain["epochs"], runs[name]["epochs"]
        if epochs is not None and epochs > most:
            _fail("mislabel.retrain.epochs", f"{epochs} is not allowed for run {name!r}: at most {most}")


def _check_depth(
    key: str, depth: int, name: str, run: Mapping[str, Any], datasets: Mapping[str, Any]
) -> None:
    n = n_stages(run, datasets)
    if not 1 <= depth < n:
        _fail(
            key,
            f"depth {depth} does not exist for run {name!r} (model {run['model']!r}); "
            f"allowed depths: 1..{n - 1}",
        )


def _check_saved_epoch(
    key: str, epoch: int, name: str, config: Mapping[str, Any], last_ok: bool = False
) -> None:
    """`epoch` must be in the run's checkpoint store (a trained run's saved epochs: 0, the multiples of
    save_every, the last; an imported run's imported epochs) and, unless `last_ok`, not be the last."""
    saved = saved_epochs(config, name)
    if epoch not in saved or (epoch == saved[-1] and not last_ok):
        run = config["runs"][name]
        which = (
            "an imported epoch" if is_imported(run) else f"a saved epoch (save_every = {run['save_every']})"
        )
        allowed = f"at most {saved[-1]}" if last_ok else f"before the last epoch {saved[-1]}"
        _fail(key, f"{epoch} is not allowed for run {name!r}: {which} {allowed}; saved: {saved}")


# --- documentation and the command line -----------------------------------------------------------


def schema_docs() -> str:
    """Markdown reference of every config key (docs/config.md), generated from the schema."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `workflow/schemas/config.schema.yaml` by `featdyn-config docs`; do not edit by hand.",
        "Every key below may be left out: it then takes its default. `<name>` stands for a name you choose.",
        "",
    ]
    for key, sub in schema()["properties"].items():
        lines += _docs_section(key, sub)
    return "\n".join(lines) + "\n"


def _docs_section(key: str, node: Mapping[str, Any]) -> list[str]:
    rows = list(_docs_rows(key, node))
    lines = [f"## `{key}`", "", node["description"], ""]
    if len(rows) > 1 or rows[0][0] != key:
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        lines += [f"| `{k}` | {t} | {d} | {text} |" for k, t, d, text in rows]
    else:
        _, kind, default, _ = rows[0]
        lines += [f"Type {kind}; default {default}."]
    return [*lines, ""]


def _docs_rows(
    key: str, node: Mapping[str, Any], missing: str = "required"
) -> Iterable[tuple[str, str, str, str]]:
    """Rows (key, type, default, description); a key without default shows `missing`: `required`, or
    `inherited` for the optional keys of named changes (`phase.variants.<name>.…`)."""
    children = node["properties"] if "properties" in node else {}
    extra = node["additionalProperties"] if "additionalProperties" in node else None
    description = node["description"] if "description" in node else ""
    if children and ("default" not in node or node["default"] == {}):
        for child, sub in children.items():
            yield from _docs_rows(f"{key}.{child}", sub, missing)
    elif not children and isinstance(extra, Mapping) and "properties" in extra:
        if "default" in node:
            yield key, "object", _default_of(node), description
        required = extra["required"] if "required" in extra else []
        for child, sub in extra["properties"].items():
            yield from _docs_rows(
                f"{key}.<name>.{child}", sub, "required" if child in required else "inherited"
            )
    else:
        yield key, _type_of(node), _default_of(node, missing), description


def _type_of(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node["type"] if "type" in node else "object"
    return " or ".join(kind) if isinstance(kind, list) else kind


def _default_of(node: Mapping[str, Any], missing: str = "required") -> str:
    if "default" not in node:
        return missing
    text = yaml.safe_dump(node["default"], default_flow_style=True, width=200).removesuffix("\n...\n")
    return f"`{text.strip()}`".replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="featdyn-config", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the effective config of a config file")
    show.add_argument("configfile", nargs="?", default="config.yaml")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    commands.add_parser("docs", help="print the Markdown reference of every key (docs/config.md)")
    args = parser.parse_args(argv)
    if args.command == "docs":
        sys.stdout.write(schema_docs())
        return
    overrides: dict[str, Any] = {}
    for item in args.set:
        dotted, _, value = item.partition("=")
        *parents, last = dotted.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    try:
        config = load_config(args.configfile, overrides)
    except ConfigError as error:
        sys.exit(f"featdyn-config: {error}")
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


if __name__ == "__main__":
    main()
