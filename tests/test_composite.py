import h5py
import numpy as np
import pytest
import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import (
    BandResult,
    CompositeEngine,
    composite_band,
    memory_window,
    memory_window_frame,
    naive_reference,
    read_band,
    run_composite,
    write_band,
)
from featdyn.models import split


@pytest.fixture(scope="module")
def store(tiny_store_path):
    return CheckpointStore(tiny_store_path)


@pytest.fixture(scope="module")
def eval_data(tiny_data):
    return tiny_data.x_test[:60], tiny_data.y_test[:60]


def engine_for(store, depth, precision="fp32"):
    return CompositeEngine(store.build_model(), store.stacked(store.epochs), depth, precision)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_diagonal_is_the_plain_network(store, eval_data, depth):
    x, y = eval_data
    result = composite_band(engine_for(store, depth), store.epochs, x, y, window=1, batch_size=25)
    w = result.window
    for t, epoch in enumerate(store.epochs):
        with torch.no_grad():
            logits = store.model_at(epoch)(x)
        assert result.accuracy[w, t] == pytest.approx(
            (logits.argmax(1) == y).double().mean().item(), abs=1e-12
        )
        assert result.agreement[w, t] == 1.0 and result.consistency[w, t] == 1.0


@pytest.mark.parametrize("depth", [1, 3])
def test_engine_matches_the_literal_definitions(store, eval_data, depth):
    x, y = eval_data
    result = composite_band(
        engine_for(store, depth), store.epochs, x, y, window=2, batch_size=25, memory_budget_mb=0.05
    )  # tiny budget: exercises chunking over epochs
    naive = naive_reference(store, depth, store.epochs, x, y, window=2)
    for name in ("accuracy", "agreement", "consistency"):
        np.testing.assert_allclose(getattr(result, name), naive[name], atol=1e-9, err_msg=name)
    np.testing.assert_allclose(result.cross_entropy, naive["cross_entropy"], rtol=1e-5, atol=1e-6)


def composite_predictions(store, depth, s, t, x):
    with torch.no_grad():
        shallow, _ = split(store.model_at(s), depth)
        _, deep = split(store.model_at(t), depth)
        return deep(shallow(x)).argmax(1)


def test_memory_and_transfer_directions_and_per_sample_consistency(store, eval_data):
    x, y = eval_data
    depth, t = 2, 3
    result = composite_band(engine_for(store, depth), store.epochs, x, y, window=2, reference_epochs=[t])
    reference = composite_predictions(store, depth, t, t, x)
    for s in (1, 2, 4):  # memory: s < t (old shallow); transferability: s > t (new shallow)
        accuracy = (composite_predictions(store, depth, s, t, x) == y).double().mean().item()
        assert result.pair_value("accuracy", s, t) == pytest.approx(accuracy, abs=1e-12)
    # c(x; t - 2, t): mean over tau in {1, 2, 3} of agreement with f^(t)
    hits = torch.stack([composite_predictions(store, depth, tau, t, x) == reference for tau in (1, 2, 3)])
    np.testing.assert_allclose(result.sample_consistency[0, 0, 2], hits.double().mean(0).numpy())
    # correct variant, transferability side: c(x; t + 1, t) over tau in {3, 4} against the labels
    hits = torch.stack([composite_predictions(store, depth, tau, t, x) == y for tau in (3, 4)])
    np.testing.assert_allclose(result.sample_consistency_correct[0, 1, 1], hits.double().mean(0).numpy())
    assert np.isnan(result.sample_consistency[0, 1, 2]).all()  # t + 2 = 5 is beyond the last epoch


def test_full_matrix_when_window_is_none(store, eval_data):
    x, y = eval_data
    result = composite_band(engine_for(store, 1), store.epochs, x, y, window=None)
    assert result.window == len(store.epochs) - 1
    assert np.isfinite(result.accuracy).sum() == len(store.epochs) ** 2


def test_memory_window_by_hand():
    consistency = np.full((5, 4), np.nan)  # window 2, epochs 0, 10, 20, 30; rows k = -2..2
    consistency[2] = 1.0
    consistency[1, 1:] = [0.9, 0.85, 0.7]  # C(t - 1, t)
    consistency[0, 2:] = [0.8, 0.75]  # C(t - 2, t)
    empty = np.zeros((1, 2, 3, 1))
    result = BandResult(
        np.array([0, 10, 20, 30]),
        2,
        consistency,
        consistency,
        consistency,
        consistency,
        consistency,
        np.array([30]),
        empty,
        empty,
    )
    window, censored = memory_window(result, threshold=0.8)
    assert window.tolist() == [0, 10, 20, 0]
    assert censored.tolist() == [True, True, True, False]


def test_bf16_agrees_with_fp32_on_most_predictions(store, eval_data):
    x, y = eval_data
    fp32 = composite_band(engine_for(store, 2), store.epochs, x, y, window=1)
    bf16 = composite_band(engine_for(store, 2, "bf16"), store.epochs, x, y, window=1)
    assert np.nanmax(np.abs(fp32.accuracy - bf16.accuracy)) < 0.1


def test_band_file_round_trip(store, eval_data, tmp_path):
    x, y = eval_data
    result = run_composite(
        store,
        2,
        x,
        y,
        window=2,
        stride=2,
        reference_epochs=[4],
        batch_size=32,
        memory_budget_mb=64,
        precision="fp32",
        device="cpu",
        progress=False,
    )
    assert result.epochs.tolist() == [0, 2, 4]
    write_band(result, tmp_path / "band.h5", {"test": True}, threshold=0.8)
    back = read_band(tmp_path / "band.h5")
    np.testing.assert_array_equal(back.consistency, result.consistency)
    np.testing.assert_array_equal(back.sample_consistency, result.sample_consistency)


def test_memory_window_frame(tmp_path) -> None:
    bands = {}
    for depth, window in ((1, [0, 1, 2]), (3, [0, 1, 1])):
        bands[depth] = tmp_path / f"train_d{depth}.h5"
        with h5py.File(bands[depth], "w") as f:
            f["epochs"], f["memory_window"] = [0, 5, 10], window
            f["memory_window_censored"] = [True, False, depth == 1]
    frame = memory_window_frame(({"depth": d}, path) for d, path in bands.items())
    assert list(frame.columns) == ["depth", "epoch", "memory_window", "censored"]
    assert frame["depth"].tolist() == [1, 1, 1, 3, 3, 3] and frame["epoch"].tolist() == [0, 5, 10] * 2
    assert frame["memory_window"].tolist() == [0, 1, 2, 0, 1, 1]
    assert frame["censored"].tolist() == [True, False, True, True, False, False]
    assert memory_window_frame([]).empty
