"""Freezing and re-initialisation continuations through the one training loop, and the mCE table."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from helpers import tiny_config
from test_dynamics import signals  # the tests folder is on sys.path

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import stage_state
from featdyn.config import ConfigError, check_config
from featdyn.data import normalize, normalizer, tensor_data, to_float
from featdyn.interventions import (
    continue_frozen,
    corruption_errors,
    load_corrupted_sets,
    mean_corruption_error,
    retrain_reinitialised,
    robustness_row,
    run_tensors,
)
from featdyn.models import build_model
from featdyn.train import Recipe, TrainSpec, evaluate, train_run

SPEC = TrainSpec(Recipe(optimizer="sgd", lr=0.05, batch_size=50, milestones=(3,)), 5, 1, 0)
MODEL_SPEC = {"name": "resnet1d", "sample_shape": [40], "classes": 10, "options": {}}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> CheckpointStore:
    """A short run with noisy-looking (shuffled) labels, so the continuation must reuse the run's labels."""
    tmp = tmp_path_factory.mktemp("original")
    arrays = signals()
    labels = np.random.default_rng(1).permutation(arrays.y_train)
    data = tensor_data(arrays, train_labels=labels)
    torch.manual_seed(0)
    model = build_model("resnet1d", data.sample_shape, 10)
    train_run(
        model,
        data,
        SPEC,
        state_dir=tmp / "state",
        out_path=tmp / "checkpoints.h5",
        model_spec=MODEL_SPEC,
        labels={"train": labels, "noise_mask": np.ones(len(labels), bool)},
        provenance={"test": "original"},
        progress=False,
    )
    return CheckpointStore(tmp / "checkpoints.h5")


def continuation(original: CheckpointStore, tmp_path, depth: int, from_epoch: int = 2) -> CheckpointStore:
    data = run_tensors(original, signals())
    continue_frozen(
        original,
        data,
        SPEC,
        from_epoch,
        depth,
        state_dir=tmp_path / f"state_d{depth}",
        out_path=tmp_path / f"freeze_d{depth}.h5",
        provenance={"test": depth},
    )
    return CheckpointStore(tmp_path / f"freeze_d{depth}.h5")


def test_unfrozen_continuation_replays_the_original_run_bitwise(original, tmp_path):
    replay = continuation(original, tmp_path, 0)
    assert replay.epochs == [2, 3, 4, 5]
    for epoch in replay.epochs:
        a, b = replay.state_dict(epoch), original.state_dict(epoch)
        assert all(torch.equal(a[name], b[name]) for name in a)
    later = original.metrics.set_index("epoch").loc[3:, ["train_loss", "test_acc"]]
    np.testing.assert_array_equal(replay.metrics.set_index("epoch").loc[3:, later.columns], later)


def test_frozen_stages_stay_bit_identical(original, tmp_path):
    frozen = continuation(original, tmp_path, 2)
    start = stage_state(original.state_dict(2), 0, 2)
    start.update({k: v for k, v in original.state_dict(2).items() if k.endswith("num_batches_tracked")})
    assert any("running_mean" in name for name in start)  # BatchNorm buffers are covered
    for epoch in frozen.epochs:
        state = frozen.state_dict(epoch)
        shallow = {k: v for k, v in state.items() if k.startswith(("stages.0.", "stages.1."))}
        assert shallow.keys() == {k for k in start if k.startswith(("stages.0.", "stages.1."))}
        assert all(torch.equal(shallow[k], start[k]) for k in shallow)
    final, unfrozen_final = frozen.state_dict(5), original.state_dict(5)
    assert not torch.equal(final["stages.2.conv1.weight"], original.state_dict(2)["stages.2.conv1.weight"])
    assert not torch.equal(final["stages.2.conv1.weight"], unfrozen_final["stages.2.conv1.weight"])


def test_reinitialised_deep_stages_retrain_on_frozen_shallow_ones(original, tmp_path):
    data = run_tensors(original, signals())
    retrain_reinitialised(
        original,
        data,
        SPEC,
        2,
        3,
        7,
        state_dir=tmp_path / "state",
        out_path=tmp_path / "reinit.h5",
        provenance={"test": "reinit"},
    )
    store = CheckpointStore(tmp_path / "reinit.h5")
    assert store.epochs == [0, 3]
    final = original.state_dict(5)
    torch.manual_seed(7)
    fresh = build_model("resnet1d", (40,), 10).state_dict()
    for epoch in store.epochs:
        state = store.state_dict(epoch)
        kept = [k for k in state if k.startswith(("stages.0.", "stages.1."))]
        assert all(torch.equal(state[k], final[k]) for k in kept)
    start = store.state_dict(0)
    deep = [k for k in start if not k.startswith(("stages.0.", "stages.1."))]
    assert all(torch.equal(start[k], fresh[k]) for k in deep)
    assert not torch.equal(store.state_dict(3)["stages.4.2.weight"], fresh["stages.4.2.weight"])


CORRUPTIONS = ("gaussian_noise", "brightness", "gaussian_blur")
"""Two benchmark corruptions and one of CIFAR-10-C's extras (reported apart from mCE)."""


def write_corrupted_file(path, x_test: np.ndarray, y_test: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """A small `{dataset}-c.h5` in the documented layout: three corruptions at severities 1 and 3."""
    rng = np.random.default_rng(0)
    sets = {}
    with h5py.File(path, "w") as f:
        f.create_dataset("y", data=y_test)
        f.attrs["corruptions"] = list(CORRUPTIONS)
        f.attrs["severities"] = [1, 3]
        for corruption in CORRUPTIONS:
            for severity in (1, 3):
                shift = rng.standard_normal(x_test.shape) if "noise" in corruption else np.ones_like(x_test)
                x = (x_test + 0.5 * severity * shift * (1 + CORRUPTIONS.index(corruption))).astype(np.float32)
                f.create_dataset(f"{corruption}/{severity}/x", data=x)
                sets[corruption, severity] = x
    return sets


def test_mce_averages_the_benchmark_corruptions_and_reports_the_extras_apart(original, tmp_path):
    arrays = signals()
    raw = write_corrupted_file(tmp_path / "c.h5", arrays.x_test, arrays.y_test)
    mean, std = normalizer(to_float(arrays.x_train))
    sets = load_corrupted_sets(tmp_path / "c.h5", mean, std)
    assert [(c, s) for c, s, _, _ in sets] == list(raw)
    model = original.model_at(5)
    errors = corruption_errors(model, sets, batch_size=16)
    y = torch.as_tensor(arrays.y_test)
    direct = {}
    with torch.no_grad():
        for (corruption, severity), x in raw.items():
            logits = model((torch.from_numpy(x) - mean) / std)
            direct[corruption, severity] = 100 * (logits.argmax(1) != y).double().mean().item()
    assert errors["error"].tolist() == pytest.approx(list(direct.values()))
    benchmark = [direct[c, s] for c in ("gaussian_noise", "brightness") for s in (1, 3)]
    assert mean_corruption_error(errors) == pytest.approx(sum(benchmark) / 4)
    assert len(set(direct.values())) > 1
    row, _ = robustness_row(model, tensor_data(arrays), sets)
    clean = 100 * evaluate(model, normalize(arrays.x_test, mean, std), y)[1]
    assert row["clean_accuracy"] == pytest.approx(clean)
    assert row["mce"] == pytest.approx(sum(benchmark) / 4)
    assert row["error_gaussian_blur"] == pytest.approx(
        (direct["gaussian_blur", 1] + direct["gaussian_blur", 3]) / 2
    )
    assert "error_gaussian_noise" not in row


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("freeze_epoch", 4, r"interventions\.freeze_epoch.*before the last epoch 4"),
        ("reinit_depths", [5], r"interventions\.reinit_depths.*allowed depths: 1\.\.4"),
        ("runs", ["nope"], r"interventions\.runs"),
    ],
)
def test_config_rejects_impossible_interventions(key, value, message):
    config = tiny_config()
    config["interventions"][key] = value
    with pytest.raises(ConfigError, match=message):
        check_config(config)
