"""Out-of-memory back-off: injected device OOM errors halve the chunks, are logged once, change nothing."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import tiny_arrays

import featdyn.sgd_noise
from featdyn.backoff import Backoff, is_out_of_memory
from featdyn.batching import MIN_ROWS, padded_forward
from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine, composite_band, composite_engine
from featdyn.data import tensor_data
from featdyn.models import build_model
from featdyn.separation import load_curve
from featdyn.sgd_noise import one_step_perturbations

pytestmark = pytest.mark.usefixtures("one_thread")

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


def test_backoff_halves_on_out_of_memory_only_and_logs_once(caplog):
    calls = []

    def needs_at_most_5(size: int) -> int:
        calls.append(size)
        if size > 5:
            raise torch.OutOfMemoryError(OOM)
        return size

    rows = Backoff("test rows", 40)
    with caplog.at_level(logging.WARNING, logger="featdyn"):
        assert rows.run(needs_at_most_5) == 5
        assert rows.run(needs_at_most_5) == 5  # the smaller size stays
    assert calls == [40, 20, 10, 5, 5]
    assert [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()] == [
        f"test rows: device out of memory at 40 ({OOM}); continuing with 20, halving again on each "
        "further out-of-memory error (results are unchanged)"
    ]
    with pytest.raises(ValueError):
        Backoff("other", 8).run(lambda size: (_ for _ in ()).throw(ValueError("not memory")))
    with pytest.raises(torch.OutOfMemoryError):  # at the minimum there is nothing left to halve
        Backoff("tiny", 2, minimum=2).run(lambda size: (_ for _ in ()).throw(torch.OutOfMemoryError(OOM)))


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError(OOM))
    assert is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    )
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_padded_forward_never_runs_fewer_rows_than_the_minimum():
    seen = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(len(x))
        return x * 2

    x = torch.arange(3.0)[:, None]
    assert torch.equal(padded_forward(fn, x), x * 2) and seen == [MIN_ROWS]


# --- composite -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tiny_store_path):
    return CheckpointStore(tiny_store_path)


def test_composite_backs_off_rows_and_epoch_chunks_with_identical_results(
    store, tiny_data, monkeypatch, caplog
):
    x, y = tiny_data.x_test[:60], tiny_data.y_test[:60]
    reference = composite_band(composite_engine(None, store, 2), store.epochs, x, y, None, [2, 4], 30)
    call, shallow_features = CompositeEngine._call, CompositeEngine.shallow_features
    forward_rows, feature_epochs = [], []

    def small_device_call(self, state, h, start, stop):
        forward_rows.append(len(h))
        if len(h) > 8:
            raise torch.OutOfMemoryError(OOM)
        return call(self, state, h, start, stop)

    def small_device_features(self, h, epochs, rows=None):
        feature_epochs.append(len(epochs))
        if len(epochs) > 2:
            raise torch.OutOfMemoryError(OOM)
        return shallow_features(self, h, epochs, rows)

    monkeypatch.setattr(CompositeEngine, "_call", small_device_call)
    monkeypatch.setattr(CompositeEngine, "shallow_features", small_device_features)
    with caplog.at_level(logging.WARNING, logger="featdyn"):
        result = composite_band(composite_engine(None, store, 2), store.epochs, x, y, None, [2, 4], 30)
    assert max(forward_rows) > 8 and max(forward_rows[-10:]) <= 8
    assert feature_epochs[0] == 5 and max(feature_epochs[-3:]) <= 2
    warnings = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(warnings) == 2  # rows and epoch chunks, each logged once
    assert warnings[0].startswith("composite: epochs of shallow features held: device out of memory at 5")
    assert warnings[1].startswith("composite: rows per forward pass: device out of memory at 30")
    for name in ("accuracy", "agreement", "consistency", "cross_entropy", "sample_consistency"):
        np.testing.assert_array_equal(getattr(result, name), getattr(reference, name), err_msg=name)


# --- separation ----------------------------------------------------------------------------------


def test_separation_backs_off_forward_batches_with_identical_results(store, tiny_data, caplog):
    model = store.model_at(4)
    x, y = tiny_data.x_train[:100], tiny_data.y_train[:100]
    reference = load_curve(model, x, y, 10, batch_size=50)

    def refuse_large_batches(module, inputs):
        if len(inputs[0]) > 12:
            raise torch.OutOfMemoryError(OOM)

    hook = model.stages[2].register_forward_pre_hook(refuse_large_batches)
    try:
        with caplog.at_level(logging.WARNING, logger="featdyn"):
            result = load_curve(model, x, y, 10, batch_size=50)
    finally:
        hook.remove()
    warnings = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("separation: samples per forward pass")
    for key in reference:
        np.testing.assert_array_equal(result[key], reference[key], err_msg=key)


# --- isotropy ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def isotropy_case():
    data = tensor_data(tiny_arrays(n_train=120, n_test=10))
    torch.manual_seed(0)
    model = build_model("resnet1d", data.sample_shape, 10)
    kwargs = dict(lr=0.05, batch_size=16, M=24, seed=3, p_max=16, chunk_size=24)
    return (model, 2, data.x_train, data.y_train, data.x_train[:2]), kwargs


def isotropy_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]


def test_isotropy_loop_backs_off_with_identical_results(isotropy_case, monkeypatch, caplog):
    args, kwargs = isotropy_case
    reference, _ = one_step_perturbations(*args, **kwargs)
    functional_call, calls = featdyn.sgd_noise.functional_call, []

    def small_device_call(*a, **kw):  # the first stepped forward pass of the first chunk fails
        calls.append(1)
        if len(calls) == 2:  # (call 1 is the unstepped reference)
            raise torch.OutOfMemoryError(OOM)
        return functional_call(*a, **kw)

    monkeypatch.setattr(featdyn.sgd_noise, "functional_call", small_device_call)
    with caplog.at_level(logging.WARNING, logger="featdyn"):
        delta, _ = one_step_perturbations(*args, **kwargs)
    warnings = isotropy_warnings(caplog)
    assert len(warnings) == 1 and "stepped shallow parts per call: device out of memory at 24" in warnings[0]
    assert warnings[0].endswith("(results are unchanged)")
    np.testing.assert_array_equal(delta, reference)


def test_isotropy_vmap_backs_off_to_float64_rounding(isotropy_case, monkeypatch, caplog):
    args, kwargs = isotropy_case
    loop, _ = one_step_perturbations(*args, **kwargs)
    reference, _ = one_step_perturbations(*args, **kwargs, vmapped=True)
    vmap, lanes = featdyn.sgd_noise.vmap, []

    def small_device_vmap(fn):
        def batched(stepped):
            lanes.append(len(next(iter(stepped.values()))))
            if lanes[-1] > 5:
                raise torch.OutOfMemoryError(OOM)
            return vmap(fn)(stepped)

        return batched

    monkeypatch.setattr(featdyn.sgd_noise, "vmap", small_device_vmap)
    with caplog.at_level(logging.WARNING, logger="featdyn"):
        delta, _ = one_step_perturbations(*args, **kwargs, vmapped=True)
    assert lanes[:4] == [24, 12, 6, 3] and sum(n for n in lanes if n <= 5) == 24
    warnings = isotropy_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].endswith("(results change in the last bits)")
    scale = np.abs(reference).max()  # vmap lanes of other group sizes round apart
    np.testing.assert_allclose(delta, reference, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(loop, reference, rtol=0, atol=1e-12 * scale)
