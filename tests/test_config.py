import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from featdyn.config import ConfigError, check_config

ROOT = Path(__file__).parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")) + [ROOT / "config.yaml"])
def test_shipped_configs_are_valid(path):
    text = path.read_text()
    config = yaml.safe_load(text)
    if text.startswith("# overlay on: "):  # used as --configfile <base> <overlay>
        overlay, config = config, yaml.safe_load((ROOT / text.split("\n")[0].split(": ")[1]).read_text())
        update_config(config, overlay)
    validate(config, SCHEMA)
    check_config(config)


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
        ("runs.tiny-clean.dataset", "imagenet", "`runs.tiny-clean.dataset`: 'imagenet' is not one of"),
        ("runs.tiny-clean.model", "vgg", "allowed values ['bottleneck_mlp'"),
        ("runs.tiny-clean.recipe", "nope", "`runs.tiny-clean.recipe`"),
        ("runs.tiny-clean.label_noise", 1.0, "outside the allowed range [0, 1)"),
        ("runs.tiny-clean.epochs", 0, "at least 1 epoch"),
        ("runs.tiny-clean.save_every", 0, "a positive number of epochs"),
        ("datasets.mnist1d.source", "mnist2d", "'mnist2d' is not one of the allowed values"),
        ("composite.depths", [1, 5], "depth 5 does not exist for run 'tiny-clean'"),
        ("pairs.tiny.noisy", "ghost", "`pairs.tiny.noisy`"),
        ("composite.runs", ["ghost"], "`composite.runs`: 'ghost' is not one of the allowed values"),
        ("device", "tpu", "`device`"),
    ],
)
def test_semantic_errors_name_key_and_allowed_values(config, key, value, message):
    with pytest.raises(ConfigError) as err:
        check_config(broken(config, key, value))
    assert message in str(err.value)
    assert str(err.value).startswith(f"config key `{key.split('.')[0]}")


@pytest.mark.parametrize(
    "key, value",
    [
        ("runs.tiny-clean.label_noise", -0.1),
        ("runs.tiny-clean.epochs", 0),
        ("recipes.mnist1d-sgd.lr", 0),
        ("composite.precision", "fp8"),
        ("runs.tiny-clean.typo_key", 1),
    ],
)
def test_schema_rejects_bad_values(config, key, value):
    with pytest.raises(WorkflowError):
        validate(broken(config, key, value), SCHEMA)
