import h5py
import numpy as np
import pytest
import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import (
    BandResult,
    CompositeEngine,
    composite_band,
    composite_engine,
    memory_window,
    memory_window_frame,
    naive_reference,
    read_band,
    run_composite,
    write_band,
)
from featdyn.data import Arrays, tensor_data
from featdyn.models import build_model, split
from featdyn.train import Recipe, TrainSpec, train_run


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
    )  # tiny budget: exercises chunking over epochs (vmap: its own test)
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


# --- the engine's paths: blocks of weights from HDF5, loop and vmap, channels_last, batching ---------

BAND_FIELDS = ("accuracy", "agreement", "consistency", "consistency_correct", "sample_consistency")


def assert_same_band(a, b, cross_entropy_rtol: float = 0.0) -> None:
    for name in BAND_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.cross_entropy, b.cross_entropy, rtol=cross_entropy_rtol, atol=0)


def test_weights_read_from_the_store_in_blocks_give_the_same_band(store, eval_data):
    x, y = eval_data
    stacked = composite_band(engine_for(store, 2), store.epochs, x, y, None, [4], 25)
    engine = composite_engine(None, store, 2, memory_budget_mb=0.1)  # blocks of a few epochs
    blocked = composite_band(engine, store.epochs, x, y, None, [4], 25)
    assert engine._deep.block_epochs < len(store.epochs) and engine.weight_reads > 2
    assert_same_band(blocked, stacked)


def test_loop_forward_is_bit_identical_to_the_plain_network(store, eval_data):
    x, _ = eval_data
    engine = composite_engine(None, store, 2, strategy="loop")
    s, t = 1, 3
    logits = engine.deep_logits(t, engine.shallow_features(x, range(s, s + 1))[0])
    with torch.no_grad():
        shallow, _ = split(store.model_at(s), 2)
        _, deep = split(store.model_at(t), 2)
        assert torch.equal(logits, deep(shallow(x)))


def test_vmap_strategy_gives_the_same_predictions(store, eval_data):
    x, y = eval_data
    loop, vmapped = (
        composite_band(composite_engine(None, store, 3, strategy=s), store.epochs, x, y, 2, [3], 32)
        for s in ("loop", "vmap")
    )
    assert_same_band(vmapped, loop, cross_entropy_rtol=1e-5)  # vmap's grouped convolutions round differently


def test_band_does_not_depend_on_batches_or_chunks(store, eval_data):
    x, y = eval_data
    whole = composite_band(engine_for(store, 1), store.epochs, x, y, None, [2, 4], batch_size=60)
    pieces = composite_band(
        engine_for(store, 1), store.epochs, x, y, None, [2, 4], batch_size=7, memory_budget_mb=0.01
    )  # 7 samples per batch, one epoch of features at a time
    assert_same_band(pieces, whole, cross_entropy_rtol=1e-12)  # CE sums group differently


def test_unknown_strategy_is_rejected(store):
    with pytest.raises(ValueError, match="unknown composite strategy 'grouped'; available"):
        composite_engine(None, store, 1, strategy="grouped")


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    """A small CNN on 8×8 two-channel images: an image model, so the engine runs in channels_last."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 96)
    x = (rng.standard_normal((96, 2, 8, 8)) + y[:, None, None, None]).astype(np.float32)
    data = tensor_data(Arrays(x[:64], y[:64], x[64:], y[64:], 4, "synthetic"))
    torch.manual_seed(0)
    model = build_model("cnn", (2, 8, 8), 4, widths=(4, 8))
    path = tmp_path_factory.mktemp("images") / "checkpoints.h5"
    spec = TrainSpec(Recipe(lr=0.05, batch_size=16, augment=True, crop_padding=1), 3, 1, 0)
    model_spec = {"name": "cnn", "sample_shape": [2, 8, 8], "classes": 4, "options": {"widths": [4, 8]}}
    train_run(
        model,
        data,
        spec,
        state_dir=path.parent / "state",
        out_path=path,
        model_spec=model_spec,
        labels={},
        provenance={},
        progress=False,
    )
    return CheckpointStore(path), data.x_test, data.y_test


def test_image_models_run_in_channels_last_with_the_literal_predictions(image_store):
    store, x, y = image_store
    engine = composite_engine(None, store, 2)
    assert engine.channels_last
    result = composite_band(engine, store.epochs, x, y, None, [3], 16)
    for channels_last in (True, False):
        naive = naive_reference(store, 2, store.epochs, x, y, 3, channels_last)
        for name in ("accuracy", "agreement"):
            np.testing.assert_array_equal(getattr(result, name), naive[name], err_msg=name)
        np.testing.assert_allclose(result.consistency, naive["consistency"], atol=1e-12)
        np.testing.assert_allclose(result.cross_entropy, naive["cross_entropy"], rtol=1e-5)
