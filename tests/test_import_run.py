"""Imported runs in the pipeline: a run trained inside featdyn, exported as a user's checkpoint series
(original module names, Lightning-style wrapper and prefix) and imported, gives the same store and the
same analyses; config-time checks of imported runs; input normalisation of outside data."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, tiny_arrays

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import run_composite
from featdyn.config import ConfigError, load_config
from featdyn.data import evaluation_set, fetch, input_normalizer, read_dataset, tensor_data, write_dataset
from featdyn.importing import import_configured_run
from featdyn.interventions import continue_frozen, run_tensors
from featdyn.planning import analysed_runs, composite_keys, run_depths, run_model, saved_epochs, stage_labels
from featdyn.sgd_noise import IsotropySettings, isotropy_at_checkpoint, learning_rate_at
from featdyn.train import TrainSpec, train_configured_run

MODEL = {
    "model": f"{ROOT}/examples/my_model.py:build",
    "model_options": {
        "width": 8,
        "stages": [["reshape", "conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3", "relu3"]]
        + [["pool", "flatten", "fc"]],
    },
}
EPOCHS = 3


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def write_config(tmp_path, runs: dict, **sections) -> dict:
    """A standalone config over the tiny signals (as an `arrays` .npz), loaded and checked."""
    if not (tmp_path / "data.npz").exists():
        a = tiny_arrays()
        np.savez(
            tmp_path / "data.npz", x_train=a.x_train, y_train=a.y_train, x_test=a.x_test, y_test=a.y_test
        )
    config = {
        "datasets": {"mine": {"source": "arrays", "path": str(tmp_path / "data.npz")}},
        "recipes": {"sgd": {"lr": 0.05, "batch_size": 40, "milestones": [2]}},
        "runs": runs,
        **sections,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return load_config(tmp_path / "config.yaml")


def trained_and_imported(tmp_path) -> tuple[dict, CheckpointStore, CheckpointStore]:
    """Train a run inside featdyn, export its checkpoints as a user's script would, import them."""
    config = write_config(
        tmp_path, {"trained": {"dataset": "mine", **MODEL, "recipe": "sgd", "epochs": EPOCHS}}
    )
    entry = config["datasets"]["mine"]
    write_dataset(fetch("arrays", {**entry, "mirror_dirs": []}, tmp_path), tmp_path / "mine.h5", {})
    run, recipe = config["runs"]["trained"], config["recipes"]["sgd"]
    train_configured_run(
        run,
        TrainSpec.from_config(run, recipe),
        tmp_path / "mine.h5",
        tmp_path / "trained.h5",
        tmp_path / "s",
        "cpu",
        {},
        progress=False,
    )
    trained = CheckpointStore(tmp_path / "trained.h5")
    model = trained.build_model()
    (tmp_path / "ckpt").mkdir()
    for epoch in trained.epochs:  # original module names, under a Lightning-style prefix and wrapper
        original = model.to_original(trained.state_dict(epoch))
        wrapped = {"epoch": epoch, "state_dict": {f"model.{k}": v for k, v in original.items()}}
        torch.save(wrapped, tmp_path / "ckpt" / f"epoch={epoch}-step={10 * epoch}.ckpt")
    imported_run = {
        "dataset": "mine",
        **MODEL,
        "recipe": "sgd",
        "checkpoints": str(tmp_path / "ckpt" / "*.ckpt"),
    }
    config = write_config(tmp_path, {"trained": run | {"dataset": "mine"}, "imported": imported_run})
    import_configured_run(
        config["runs"]["imported"], recipe, tmp_path / "mine.h5", tmp_path / "imp.h5", "cpu", {}
    )
    return config, trained, CheckpointStore(tmp_path / "imp.h5")


def test_imported_run_equals_the_run_trained_inside_featdyn(tmp_path):
    config, trained, imported = trained_and_imported(tmp_path)
    assert (
        saved_epochs(config, "imported") == saved_epochs(config, "trained") == imported.epochs == [0, 1, 2, 3]
    )
    assert imported.imported_from and trained.imported_from is None
    assert set(imported.state_names) == set(trained.state_names)  # BatchNorm buffers too
    for epoch in trained.epochs:
        for name, value in trained.state_dict(epoch).items():
            assert torch.equal(imported.state_dict(epoch)[name], value), (epoch, name)
    # test metrics and lr are the same numbers; train metrics of an import are eval-mode, after the epoch
    columns = ["epoch", "lr", "test_loss", "test_acc"]
    expected = trained.metrics[trained.metrics["epoch"].isin(imported.epochs)][columns].reset_index(drop=True)
    assert imported.metrics[columns].equals(expected)
    arrays = read_dataset(tmp_path / "mine.h5")
    x, y = evaluation_set(tensor_data(arrays), arrays, "train", 100, 0)
    settings = dict(window=None, stride=1, reference_epochs=[], batch_size=64, memory_budget_mb=64)
    for depth in run_depths(config, "composite", "imported"):
        a = run_composite(trained, depth, x, y, **settings, precision="fp32", device="cpu", progress=False)
        b = run_composite(imported, depth, x, y, **settings, precision="fp32", device="cpu", progress=False)
        for field in ("accuracy", "cross_entropy", "consistency", "sample_consistency"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    iso = IsotropySettings(M=8, n_probe=2, p_max=16, B=50)
    a, b = (isotropy_at_checkpoint(s, arrays, EPOCHS, 2, 40, iso) for s in (trained, imported))
    np.testing.assert_array_equal(a["delta"], b["delta"])
    assert a["lr"] == b["lr"] == pytest.approx(0.005)  # the recipe's lr after its milestone 2


def test_imported_runs_skip_what_they_cannot_do(tmp_path):
    config, _, imported = trained_and_imported(tmp_path)
    assert analysed_runs(config, "interventions") == ["trained"]
    assert sorted(analysed_runs(config, "composite")) == ["imported", "trained"]
    assert stage_labels(config, "imported") == {
        1: "1 (reshape…relu1)",
        2: "2 (conv2…relu2)",
        3: "3 (conv3…relu3)",
        4: "4 (pool…fc)",
    }
    with pytest.raises(ValueError, match="no optimizer state.*interventions.runs"):
        continue_frozen(
            imported,
            run_tensors(imported, read_dataset(tmp_path / "mine.h5")),
            TrainSpec.from_config(config["runs"]["trained"], config["recipes"]["sgd"]),
            1,
            1,
            state_dir=tmp_path / "c",
            out_path=tmp_path / "c.h5",
            provenance={},
        )
    with pytest.raises(ConfigError, match="`interventions.runs`: run 'imported' cannot be analysed here"):
        write_config(tmp_path, dict(config["runs"]), interventions={"runs": ["imported"]})
    no_recipe = {k: v for k, v in config["runs"]["imported"].items() if k != "recipe"}
    config = write_config(tmp_path, {"imported": no_recipe})
    assert analysed_runs(config, "isotropy") == [] and analysed_runs(config, "composite") == ["imported"]
    with pytest.raises(ConfigError, match="`isotropy.runs`: .*without a `recipe`"):
        write_config(tmp_path, {"imported": no_recipe}, isotropy={"runs": ["imported"]})
    import_configured_run(
        config["runs"]["imported"], None, tmp_path / "mine.h5", tmp_path / "n.h5", "cpu", {}
    )
    with pytest.raises(ValueError, match="no learning rate at epoch 3 .*`recipe`"):
        learning_rate_at(CheckpointStore(tmp_path / "n.h5"), 3)


@pytest.mark.parametrize(
    "change, key, message",
    [
        ({"checkpoint_epochs": [0, 7]}, "checkpoints", "lack the epochs [7]; found epochs [0, 1, 2]"),
        ({"model_options": {**MODEL["model_options"], "width": 4}}, "checkpoints", "has shape (4, 1, 5)"),
        ({"epochs": 3}, "epochs", "imported runs take their epochs from the files"),
        ({"label_noise": 0.2}, "label_noise", "trained on its dataset's labels"),
        ({"checkpoints": "nowhere/ckpt_{epoch}.pt"}, "checkpoints", "no checkpoint files match the pattern"),
        ({"depths": [1, 4]}, "depths", "depth 4 does not exist for run 'imported'"),
    ],
)
def test_imported_run_errors_name_key_and_file(tmp_path, change, key, message):
    (tmp_path / "ckpt").mkdir()
    model = load_model(tmp_path)
    for epoch in range(3):
        torch.save(model.to_original(model.state_dict()), tmp_path / "ckpt" / f"ckpt_{epoch}.pt")
    run = {"dataset": "mine", **MODEL, "checkpoints": str(tmp_path / "ckpt" / "ckpt_{epoch}.pt")}
    assert saved_epochs(write_config(tmp_path, {"imported": run}), "imported") == [0, 1, 2]
    with pytest.raises(ConfigError) as err:
        write_config(tmp_path, {"imported": run | change})
    assert str(err.value).startswith(f"config key `runs.imported.{key}`") and message in str(err.value)


def test_unreadable_checkpoint_is_named_before_any_job(tmp_path):
    (tmp_path / "ckpt").mkdir()
    model = load_model(tmp_path)
    for epoch in range(2):
        torch.save(model.to_original(model.state_dict()), tmp_path / "ckpt" / f"ckpt_{epoch}.pt")
    broken = tmp_path / "ckpt" / "ckpt_2.pt"
    broken.write_bytes((tmp_path / "ckpt" / "ckpt_0.pt").read_bytes()[:100])
    run = {"dataset": "mine", **MODEL, "checkpoints": str(tmp_path / "ckpt" / "ckpt_{epoch}.pt")}
    with pytest.raises(ConfigError, match=f"unreadable checkpoint file {broken}"):
        write_config(tmp_path, {"imported": run})


def load_model(tmp_path):
    config = write_config(tmp_path, {"t": {"dataset": "mine", **MODEL, "recipe": "sgd", "epochs": 1}})
    return run_model(config["runs"]["t"], config["datasets"])


def test_outside_models_and_data_are_checked_at_config_time(tmp_path):
    base = {"dataset": "mine", **MODEL, "recipe": "sgd", "epochs": 1}
    wrong_map = copy.deepcopy(base)
    wrong_map["model_options"]["stages"] = [["reshape", "conv1", "bn1"], ["conv2", "bn2", "relu2"]] + base[
        "model_options"
    ]["stages"][2:]
    with pytest.raises(ConfigError, match=r"`runs.t.model`: .*StageMapError.*'conv2'"):
        write_config(tmp_path, {"t": wrong_map})
    with pytest.raises(ConfigError, match="`runs.t`: a trained run needs \\['recipe'\\]"):
        write_config(tmp_path, {"t": {k: v for k, v in base.items() if k != "recipe"}})
    config = write_config(tmp_path, {"t": base})
    broken = copy.deepcopy(config)
    broken["datasets"]["mine"]["path"] = str(tmp_path / "missing.npz")
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump({k: broken[k] for k in ("datasets", "recipes", "runs")})
    )
    with pytest.raises(ConfigError, match="`datasets.mine`: the 'arrays' dataset cannot be read"):
        load_config(tmp_path / "bad.yaml")
    two = {"datasets": {"mine": {**broken["datasets"]["mine"], "path": str(tmp_path / "data.npz")}}}
    two["datasets"]["mine"]["normalize"] = {"mean": [0.0, 1.0], "std": 1.0}
    with pytest.raises(
        ConfigError, match=r"`datasets.mine.normalize.mean`: 2 values for inputs of shape \(40,\)"
    ):
        load_config(tmp_path / "config.yaml", two)


def test_per_run_depths_override_the_sections(tmp_path):
    base = {"dataset": "mine", **MODEL, "recipe": "sgd", "epochs": 1}
    runs = {"a": base, "b": base | {"depths": [1, 3]}, "c": base | {"depths": {"isotropy": [2]}}}
    config = write_config(tmp_path, runs, composite={"depths": [1, 2], "figure_depth": 1})
    assert [run_depths(config, "composite", r) for r in "abc"] == [[1, 2], [1, 3], [1, 2]]
    assert [run_depths(config, "isotropy", r) for r in "abc"] == [[1, 3], [1, 3], [2]]
    assert [run_depths(config, "reinit", r) for r in "abc"] == [[2, 3], [1, 3], [2, 3]]
    assert composite_keys(config, ["a", "b"], ["test"], figure_only=True) == [
        ("a", "test", 1),
        ("b", "test", 3),
    ]
    pairs = {"p": {"clean": "a", "noisy": "b"}}
    with pytest.raises(ConfigError, match="`pairs.p`: .*composite depths and figure depths differ"):
        write_config(tmp_path, runs, composite={"depths": [1, 2], "figure_depth": 1}, pairs=pairs)


def test_input_normalisation_follows_the_dataset_option():
    arrays = tiny_arrays()
    mean, std = input_normalizer(arrays)
    x = tensor_data(arrays).x_train
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-4  # featdyn: training statistics
    raw = tensor_data(dataclasses.replace(arrays, normalize="none")).x_train
    assert torch.equal(raw, torch.from_numpy(arrays.x_train))
    fixed = dataclasses.replace(arrays, normalize={"mean": 0.5, "std": 2.0})
    torch.testing.assert_close(tensor_data(fixed).x_train, (torch.from_numpy(arrays.x_train) - 0.5) / 2.0)
    images = dataclasses.replace(
        arrays,
        x_train=np.full((4, 3, 2, 2), 255, np.uint8),
        x_test=np.zeros((2, 3, 2, 2), np.uint8),
        normalize={"mean": [0.0, 0.5, 1.0], "std": [1.0, 0.5, 0.25]},
    )
    channels = tensor_data(images).x_train[0, :, 0, 0]  # ToTensor + Normalize, as torchvision does
    torch.testing.assert_close(channels, torch.tensor([1.0, 1.0, 0.0]))
