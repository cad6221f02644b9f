"""Temporal ensembles (docs/definitions.md §13): composite and checkpoint ensembles, weight average,
metrics, the table and the stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_arrays, train_tiny

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
from featdyn.data import training_subset
from featdyn.ensembles import (
    TABLE_COLUMNS,
    EnsembleSettings,
    average_state,
    cumulative_window_means,
    ensemble_stage,
    ensemble_table,
    expected_calibration_error,
    prediction_ensembles,
    probability_metrics,
    recompute_batchnorm,
    weight_average_model,
    window_counts,
)
from featdyn.models import split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tiny_store_path) -> CheckpointStore:
    return CheckpointStore(tiny_store_path)


@pytest.fixture(scope="module")
def eval_data(tiny_data):
    return tiny_data.x_test[:50], tiny_data.y_test[:50]


# --- metrics -----------------------------------------------------------------------------------------


def test_ece_hand_computed() -> None:
    # confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.5 (wrong); 15 bins of width 1/15:
    # 0.9 → bin (13/15, 14/15], 0.6 → (8/15, 9/15], 0.5 → (7/15, 8/15].
    # ECE = 2/4·|1/2 − 0.9| + 1/4·|1 − 0.6| + 1/4·|0 − 0.5| = 0.2 + 0.1 + 0.125 = 0.425
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 1])
    assert expected_calibration_error(probs, y) == pytest.approx(0.425, abs=1e-15)
    # a bin edge belongs to the bin below it: confidence 2/3 = 10/15 lies in (9/15, 10/15]
    edge = torch.tensor([[2 / 3, 1 / 3], [0.7, 0.3]], dtype=torch.float64)
    # 2/3 and 0.7 = 10.5/15 fall in different bins: |1 − 2/3|/2 + |0 − 0.7|/2
    assert expected_calibration_error(edge, torch.tensor([0, 1])) == pytest.approx((1 / 3 + 0.7) / 2)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == 0.0


def test_probability_metrics() -> None:
    logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randint(0, 5, (40,), generator=torch.Generator().manual_seed(1))
    metrics = probability_metrics(logits.softmax(1), y)
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == y).double().mean().item())
    assert metrics["cross_entropy"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-12)


def test_cumulative_window_means() -> None:
    probs = torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    means = cumulative_window_means(probs, [1, 3, 4])
    for i, count in enumerate([1, 3, 4]):
        torch.testing.assert_close(means[i], probs[4 - count :].mean(0))


# --- prediction ensembles ---------------------------------------------------------------------------


def engine_for(store: CheckpointStore, epochs: list[int], depth: int) -> CompositeEngine:
    return CompositeEngine(store.build_model(), store.stacked(epochs), depth)


@pytest.mark.parametrize("depth", [1, 3])
def test_ensembles_at_window_zero_are_the_network(store, eval_data, depth) -> None:
    x, _ = eval_data
    probs = prediction_ensembles(engine_for(store, [4], depth), x, [1], batch_size=16)
    with torch.no_grad():
        expected = store.model_at(4)(x).double().softmax(1)
    torch.testing.assert_close(probs["single"], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(probs["composite"][0], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(probs["checkpoint"][0], expected, rtol=1e-6, atol=1e-7)


def test_ensembles_equal_the_literal_means(store, eval_data) -> None:
    x, _ = eval_data
    depth, epochs = 2, [1, 2, 3, 4]
    probs = prediction_ensembles(engine_for(store, epochs, depth), x, [2, 4], batch_size=16)
    models = {e: store.model_at(e) for e in epochs}
    _, deep_t = split(models[4], depth)
    with torch.no_grad():
        composite = [deep_t(split(models[e], depth)[0](x)).double().softmax(1) for e in epochs]
        checkpoint = [models[e](x).double().softmax(1) for e in epochs]
    for i, count in enumerate([2, 4]):
        torch.testing.assert_close(
            probs["composite"][i], torch.stack(composite[-count:]).mean(0), atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            probs["checkpoint"][i], torch.stack(checkpoint[-count:]).mean(0), atol=1e-6, rtol=0
        )
    assert not torch.allclose(probs["composite"][1], probs["checkpoint"][1], atol=1e-3)


# --- weight average ------------------------------------------------------------------------------------


def test_average_state_is_the_arithmetic_mean(store) -> None:
    stacked = store.stacked([2, 4])
    averaged = average_state(stacked)
    for name, value in stacked.items():
        if value.is_floating_point():
            np.testing.assert_allclose(
                averaged[name].numpy(), (value[0].numpy() + value[1].numpy()) / 2, rtol=1e-6
            )
        else:
            assert torch.equal(averaged[name], value[1])
    one = average_state(store.stacked([3]))
    for name, value in store.state_dict(3).items():
        assert torch.equal(one[name], value), name


def test_weight_average_of_one_checkpoint_without_batchnorm_is_that_checkpoint(tmp_path, tiny_data) -> None:
    path, _, _ = train_tiny(tmp_path, "mlp", epochs=2, hidden=[16, 16])
    mlp_store = CheckpointStore(path)
    averaged = weight_average_model(mlp_store, [2], tiny_data.x_train, batch_size=64)
    original = mlp_store.model_at(2)
    for (name, a), (_, b) in zip(averaged.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(averaged(tiny_data.x_test), original(tiny_data.x_test))


def test_batchnorm_is_recomputed_on_the_training_inputs(store, tiny_data) -> None:
    """The weight average of one checkpoint has that checkpoint's parameters exactly; its BatchNorm
    statistics are those of the training inputs, not the checkpoint's running averages, so its
    predictions equal the checkpoint's only once the checkpoint's statistics are recomputed alike."""
    x_train = tiny_data.x_train
    averaged = weight_average_model(store, [4], x_train, batch_size=len(x_train))  # one batch: exact stats
    original = store.model_at(4)
    for name, param in original.named_parameters():
        assert torch.equal(averaged.get_parameter(name), param), name
    stem_bn = averaged.stages[0][2]
    with torch.no_grad():
        conv_out = original.stages[0][1](original.stages[0][0](x_train)).double().numpy()  # (N, C, L)
    per_channel = conv_out.transpose(1, 0, 2).reshape(conv_out.shape[1], -1)
    np.testing.assert_allclose(stem_bn.running_mean.numpy(), per_channel.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stem_bn.running_var.numpy(), per_channel.var(1, ddof=1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(stem_bn.running_mean, original.stages[0][2].running_mean)
    recomputed = recompute_batchnorm(store.model_at(4), x_train, batch_size=len(x_train))
    with torch.no_grad():
        torch.testing.assert_close(averaged(tiny_data.x_test), recomputed(tiny_data.x_test), rtol=0, atol=0)


def test_batchnorm_recompute_averages_the_batches(store, tiny_data) -> None:
    x_train = tiny_data.x_train[:120]
    model = recompute_batchnorm(store.model_at(4), x_train, batch_size=40)
    conv = model.stages[0][1]
    with torch.no_grad():
        means = [conv(model.stages[0][0](x_train[i : i + 40])).mean((0, 2)) for i in (0, 40, 80)]
    torch.testing.assert_close(
        model.stages[0][2].running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6
    )
    assert not model.training


# --- the table -------------------------------------------------------------------------------------------


def test_ensemble_table(store, eval_data, tiny_data) -> None:
    x, y = eval_data
    sets = {"test": (x, y), "shifted": (x + 0.5, y)}
    table = ensemble_table(store, [1, 2], 4, [3, 0, 1], sets, tiny_data.x_train, batch_size=32)
    assert list(table.columns) == TABLE_COLUMNS
    rows_per_window = 1 + 2 + 1 + 1  # single, composite at each depth, checkpoint, weight average
    assert len(table) == 2 * 3 * rows_per_window
    assert window_counts(store.epochs, 4, [0, 1, 3]) == [1, 2, 4]
    one_set = table[table["eval_set"] == "test"]
    np.testing.assert_array_equal(one_set.drop_duplicates("window")["n_epochs"], [1, 2, 4])
    metrics = ["accuracy", "cross_entropy", "ece"]
    at_zero = one_set[one_set["window"] == 0]
    single = at_zero[at_zero["method"] == "single"][metrics].to_numpy()
    for method in ("composite", "checkpoint", "weight_average"):
        chosen = at_zero[at_zero["method"] == method]
        assert len(chosen) == (2 if method == "composite" else 1)
        if method != "weight_average":  # its BatchNorm is recomputed, so it differs from f^(t) even at W = 0
            np.testing.assert_allclose(
                chosen[metrics].to_numpy(), np.repeat(single, len(chosen), 0), rtol=1e-6
            )
    assert set(table[table["method"] == "composite"]["depth"]) == {1, 2}
    assert set(table[table["method"] != "composite"]["depth"]) == {0}
    singles = one_set[one_set["method"] == "single"][metrics].to_numpy()
    np.testing.assert_array_equal(singles, np.repeat(singles[:1], 3, axis=0))
    averaged = weight_average_model(store, [3, 4], tiny_data.x_train, batch_size=32)
    for name, (inputs, labels) in sets.items():
        with torch.no_grad():
            expected = probability_metrics(averaged(inputs).double().softmax(1), labels)
        row = table[
            (table["eval_set"] == name) & (table["window"] == 1) & (table["method"] == "weight_average")
        ]
        assert row["cross_entropy"].item() == pytest.approx(expected["cross_entropy"], rel=1e-6)
    assert table[metrics].notna().all().all()
    assert not np.allclose(
        table[table["eval_set"] == "test"]["cross_entropy"],
        table[table["eval_set"] == "shifted"]["cross_entropy"],
    )


def test_ensemble_stage_reads_the_named_sets(store, tiny_data) -> None:
    arrays = tiny_arrays()
    settings = EnsembleSettings(depths=(2,), windows=(0, 2), bn_train_subset=100, batch_size=64)
    table = ensemble_stage(store, arrays, 4, ["test"], settings)
    assert set(table["eval_set"]) == {"test"} and set(table["window"]) == {0, 2}
    assert (table["seconds"] > 0).all()
    _, x_bn = training_subset(tiny_data, 100, 0)
    direct = ensemble_table(store, [2], 4, [0, 2], {"test": (tiny_data.x_test, tiny_data.y_test)}, x_bn, 64)
    np.testing.assert_allclose(
        table[direct.columns[6:]].to_numpy(), direct.iloc[:, 6:].to_numpy(), rtol=1e-12
    )
