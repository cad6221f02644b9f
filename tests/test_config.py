"""The config: schema defaults, composition by `extends`, validation with suggestions, semantic checks,
and the settings dataclasses that must agree with the schema."""

import copy
import dataclasses
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT, TINY, tiny_config

from featdyn.config import (
    ConfigError,
    check_config,
    effective_config,
    fill_defaults,
    layered,
    load_config,
    merge,
    schema,
    schema_docs,
)
from featdyn.ensembles import EnsembleSettings
from featdyn.guided import GuidedSettings
from featdyn.linear_nets import LinearNetSettings
from featdyn.phase import CellSettings
from featdyn.planning import (
    ensemble_corrupted_file,
    ensemble_epoch,
    surrogate_epochs,
    surrogate_figure_depth,
    surrogate_figure_window,
    surrogate_keys,
)
from featdyn.regression_load import RegressionSettings
from featdyn.sgd_noise import IsotropySettings
from featdyn.surrogates import SurrogateSettings
from featdyn.train import Recipe

PRESETS = sorted((ROOT / "configs").glob("*.yaml")) + [ROOT / "config.yaml"]


@pytest.fixture
def config():
    return tiny_config()


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert "extends" not in config and config["runs"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_presets_hold_only_what_they_change(path):
    """A preset is a short overlay: no key repeats the value it would get from its base anyway."""
    own = yaml.safe_load(path.read_text())
    if "extends" in own:
        base = load_config(path.parent / own["extends"])
        # `phase.dataset: auto` resolves by what is on disk: a preset naming a dataset repeats nothing
        raw_phase = layered(path.parent / own["extends"]).get("phase", {})
        base["phase"]["dataset"] = raw_phase.get("dataset", "auto")
    else:
        base = {key: copy.deepcopy(own[key]) for key in ("datasets", "recipes", "runs") if key in own}
        fill_defaults(base, schema())

    def repeated(node, reference, where=""):
        for key, value in node.items():
            path_ = f"{where}.{key}".lstrip(".")
            if key == "extends" or key not in reference:
                continue
            if isinstance(value, dict) and isinstance(reference[key], dict):
                yield from repeated(value, reference[key], path_)
            elif value == reference[key] and where.split(".")[0] not in ("datasets", "recipes", "runs"):
                yield path_

    assert list(repeated(own, base)) == []


def test_every_key_has_a_default_and_a_description():
    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            path = f"{where}.{key}".lstrip(".")
            assert "description" in sub or where.endswith("axes") or where.endswith("cases"), path
            yield path, sub
            yield from walk(sub, path)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            yield from walk(extra, f"{where}.<name>")

    required = {"datasets", "recipes", "runs", "pairs", "extends"}  # named entries: no defaults
    overlays = (".variants.<name>.", ".trainings.<name>.")  # named changes: inherit their section's values
    for path, sub in walk(schema(), ""):
        if path.split(".")[0] in required or path.startswith("phase.axes.") or ".cases" in path:
            continue
        if any(part in path for part in overlays):
            continue
        assert "default" in sub, f"{path} has no default"


def test_tiny_overlay_equals_its_base_with_the_changes(config):
    base = load_config(ROOT / "config.yaml")
    assert config["runs"]["m1d-clean"]["epochs"] == 4 and base["runs"]["m1d-clean"]["epochs"] == 40
    assert config["runs"]["m1d-clean"]["model"] == base["runs"]["m1d-clean"]["model"] == "resnet1d"
    assert config["recipes"]["mnist1d-sgd"]["momentum"] == 0.9  # inherited from config.yaml
    assert config["isotropy"]["reduce"] == "gap"  # schema default
    assert config["phase"]["axes"] == {"dropout": [0.0, 0.3]}  # a mapping set by the overlay stays whole


def test_merge_merges_mappings_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert merge(base, {"a": {"y": [3]}, "c": None}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": None}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


def test_extends_chain_and_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text(f"extends: {TINY}\nseed: 3\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\ncomposite: {window: 3}\n")
    config = load_config(tmp_path / "b.yaml")
    assert config["seed"] == 3 and config["composite"]["window"] == 3 and config["composite"]["stride"] == 1
    (tmp_path / "c.yaml").write_text("extends: d.yaml\n")
    (tmp_path / "d.yaml").write_text("extends: c.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "c.yaml")


def test_snakemake_overrides_stay_on_top_of_the_base():
    """What Snakemake read (the preset plus --config) wins over the `extends` base."""
    read = {**yaml.safe_load(TINY.read_text()), "progress": True, "seed": 7}
    config = effective_config(read, [TINY])
    assert config["progress"] is True and config["seed"] == 7 and config["runs"]["m1d-clean"]["epochs"] == 4


def broken(config, dotted_key, value):
    config = copy.deepcopy(config)
    *parents, last = dotted_key.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("runs.m1d-clean.dataset", "imagenet", "`runs.m1d-clean.dataset`: 'imagenet' is not one of"),
        ("runs.m1d-clean.model", "vgg", "allowed values ['bottleneck_mlp'"),
        ("runs.m1d-clean.recipe", "nope", "`runs.m1d-clean.recipe`"),
        ("datasets.mnist1d.source", "mnist2d", "'mnist2d' is not one of the allowed values"),
        ("composite.depths", [1, 5], "depth 5 does not exist for run 'm1d-clean'"),
        ("pairs.m1d.noisy", "ghost", "`pairs.m1d.noisy`"),
        ("composite.runs", ["ghost"], "`composite.runs`: 'ghost' is not one of the allowed values"),
        ("stats.figure_severity", 3, "`stats.figure_severity`: 3 is not one of the allowed values [5]"),
        ("surrogates.depths", [2, 5], "`surrogates.depths`: depth 5 does not exist for run 'm1d-clean'"),
        ("surrogates.runs", ["ghost"], "`surrogates.runs`: 'ghost' is not one of the allowed values"),
        ("surrogates.epochs", [7], "`surrogates.epochs`: 7 is not allowed for run 'm1d-clean'"),
        (
            "surrogates.figure_window",
            1,
            "`surrogates.figure_window`: 1 is not one of the allowed values [0, 2]",
        ),
        ("ensembles.eval_sets", ["train"], "`ensembles.eval_sets`: 'train' is not one of the allowed values"),
        (
            "ensembles.eval_sets",
            ["contrast-5"],
            "'contrast-5' is not one of the allowed values ['test', 'gaussian_blur-5']",
        ),
        ("ensembles.epoch", 9, "`ensembles.epoch`: 9 is not allowed for run 'm1d-clean'"),
        ("guided.dataset", "mnist1d", "`guided.dataset`: 'mnist1d' (source 'mnist1d', samples (40,))"),
        ("springblock.leftward.mu_l", [0.01], "`springblock.leftward.mu_l`: 0.01 is not allowed: Eq. 8"),
        ("phase.figure_axis", "lr", "`phase.figure_axis`: 'lr' is not one of the allowed values ['dropout']"),
        ("phase.figure_alpha", 0.5, "`phase.figure_alpha`: 0.5 is not one of the allowed values [0.0]"),
        ("phase.variants", {"big": {"axes": {"batch_size": [500]}}}, "`phase.variants.big.axes.batch_size`"),
        (
            "linear_nets.batch_size",
            64,
            "`linear_nets.batch_size`: 64 is not allowed: at most linear_nets.n_samples",
        ),
        (
            "regression.trainings",
            {"lazy": {}, "big": {"batch_size": 101}},
            "`regression.trainings.big.batch_size`: 101 is not allowed: at most regression.n_train = 100",
        ),
        ("regression.trainings", {"lazy": None}, "`regression.trainings`: every training is null"),
        ("guided.batch_size", 500, "`guided.batch_size`: 500 is not allowed: at most guided.n_train = 120"),
    ],
)
def test_semantic_errors_name_key_and_allowed_values(config, key, value, message):
    with pytest.raises(ConfigError) as err:
        check_config(broken(config, key, value))
    assert message in str(err.value)
    assert str(err.value).startswith(f"config key `{key.split('.')[0]}")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("runs.m1d-clean.label_noise", -0.1, "`runs.m1d-clean.label_noise`: -0.1 is less than the minimum"),
        ("runs.m1d-clean.label_noise", 1.0, "`runs.m1d-clean.label_noise`: 1.0 is greater than or equal"),
        ("runs.m1d-clean.epochs", 0, "`runs.m1d-clean.epochs`: 0 is less than the minimum of 1"),
        ("runs.m1d-clean.save_every", 0, "`runs.m1d-clean.save_every`"),
        ("recipes.mnist1d-sgd.lr", 0, "`recipes.mnist1d-sgd.lr`"),
        ("composite.precision", "fp8", "`composite.precision`: 'fp8' is not one of ['fp32', 'bf16']"),
        (
            "composite.strategy",
            "grouped",
            "`composite.strategy`: 'grouped' is not one of ['auto', 'loop', 'vmap']",
        ),
        ("recipes.mnist1d-sgd.precision", "fp16", "`recipes.mnist1d-sgd.precision`: 'fp16' is not one of"),
        (
            "recipes.mnist1d-sgd.compile",
            "yes",
            "`recipes.mnist1d-sgd.compile`: 'yes' is not of type 'boolean'",
        ),
        ("device", "tpu", "`device`: 'tpu' is not one of"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(key, value, message):
    raw = yaml.safe_load(TINY.read_text())
    raw = merge(load_config(ROOT / "config.yaml"), raw)  # every key present, so `broken` can reach it
    with pytest.raises(ConfigError) as err:
        effective_config(broken(raw, key, value))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "key, suggestion",
    [
        ("composit", "did you mean `composite`?"),
        ("runs.m1d-clean.label_nosie", "did you mean `label_noise`?"),
        ("composite.windwo", "did you mean `window`?"),
        ("dynamics.pca.histroy", "did you mean `history`?"),
    ],
)
def test_unknown_keys_are_rejected_with_the_closest_valid_key(key, suggestion):
    raw = broken(yaml.safe_load(TINY.read_text()), key, 1)
    with pytest.raises(ConfigError) as err:
        effective_config(raw, [TINY])
    assert f"config key `{key}`: unknown key; {suggestion}" in str(err.value)


@pytest.mark.parametrize(
    "settings_class, section",
    [
        (Recipe, ("recipes", "<name>")),
        (IsotropySettings, ("isotropy",)),
        (CellSettings, ("phase",)),
        (SurrogateSettings, ("surrogates",)),
        (EnsembleSettings, ("ensembles",)),
        (LinearNetSettings, ("linear_nets",)),
        (GuidedSettings, ("guided",)),
        (RegressionSettings, ("regression",)),
    ],
)
def test_settings_dataclasses_default_to_the_schema(settings_class, section):
    """The defaults of a settings dataclass are the schema's: one place for every default."""
    node = schema()
    for key in section:
        node = node["additionalProperties"] if key == "<name>" else node["properties"][key]
    for field in dataclasses.fields(settings_class):
        default = field.default
        expected = node["properties"][field.name]["default"]
        assert (list(default) if isinstance(default, tuple) else default) == expected, field.name


def test_config_reference_is_generated_from_the_schema():
    """docs/config.md is what `featdyn-config docs` prints: regenerate it after editing the schema."""
    assert (ROOT / "docs/config.md").read_text() == schema_docs()
    assert "| `composite.threshold` | number | `0.8` |" in schema_docs()


def test_show_prints_the_effective_config():
    result = subprocess.run(
        [sys.executable, "-m", "featdyn.config", "show", str(TINY), "--set", "composite.window=3"],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = yaml.safe_load(result.stdout)
    assert shown["composite"]["window"] == 3 and shown["isotropy"]["B"] == 200
    assert shown["separation"]["include_output"] is False


def test_show_reports_config_errors_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {TINY}\ncomposit: {{window: 1}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "featdyn.config", "show", str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "did you mean `composite`?" in result.stderr


def test_relative_extends_resolves_next_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "base" / "base.yaml").write_text(f"extends: {TINY}\nseed: 5\n")
    (tmp_path / "mine" / "mine.yaml").write_text("extends: ../base/base.yaml\ncomposite: {window: 3}\n")
    monkeypatch.chdir(ROOT)  # a working directory unrelated to either file
    config = load_config(tmp_path / "mine" / "mine.yaml")
    assert config["seed"] == 5 and config["composite"]["window"] == 3
    (tmp_path / "mine" / "lost.yaml").write_text("extends: base.yaml\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "mine" / "lost.yaml")


def test_surrogate_and_ensemble_planning(config):
    """Reference epochs, jobs, figure choices and corrupted inputs of the §12/§13 stages (tiny preset)."""
    assert surrogate_epochs(config, "m1d-clean") == [2, 4]  # stride 2 over 0..4, without epoch 0
    assert surrogate_epochs(broken(config, "surrogates.epochs", [1, 3]), "m1d-clean") == [1, 3]
    assert surrogate_keys(config) == [("m1d-clean", 2), ("m1d-noisy", 2)]
    assert surrogate_figure_depth(config) == 2 and surrogate_figure_window(config) == 2
    assert ensemble_epoch(config, "m1d-clean") == 4
    assert ensemble_corrupted_file(config, "m1d-clean") == ["results/data/mnist1d-c.h5"]
    assert ensemble_corrupted_file(broken(config, "ensembles.eval_sets", ["test"]), "m1d-clean") == []
