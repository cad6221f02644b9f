"""One-step SGD perturbations of features: the batched protocol, the pipeline stage and its planning."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_arrays, tiny_config
from torch import nn

from featdyn.checkpoints import CheckpointStore
from featdyn.config import ConfigError, check_config
from featdyn.data import subset_indices, tensor_data
from featdyn.isotropy import (
    bootstrap_pvalue,
    perturbation_stats,
    top_share_frame,
)
from featdyn.planning import checkpoint_epochs, isotropy_keys, memory_depths
from featdyn.sgd_noise import (
    IsotropySettings,
    isotropy_at_checkpoint,
    isotropy_row,
    minibatch_indices,
    minibatch_seed,
    one_step_perturbations,
    read_isotropy,
    write_isotropy,
)

# --- one-step protocol --------------------------------------------------------------------------


class Staged(nn.Module):
    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def tiny_mlp(dropout: float = 0.0) -> Staged:
    torch.manual_seed(0)
    return Staged(
        [
            nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU()),
            nn.Sequential(nn.Linear(12, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(dropout)),
            nn.Linear(10, 4),
        ]
    )


def tiny_cnn() -> Staged:
    torch.manual_seed(1)
    return Staged(
        [
            nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()),
            nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)),
        ]
    )


def warmed_up(model: Staged, x: torch.Tensor) -> Staged:
    """Give BatchNorm non-trivial running statistics, then leave the model in eval mode."""
    with torch.no_grad():
        model.train()
        model(x)
    return model.eval()


@pytest.fixture(scope="module")
def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(128, 6, generator=generator), torch.randint(0, 4, (128,), generator=generator)


@pytest.fixture(scope="module")
def cnn_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(64, 3, 6, 6, generator=generator), torch.randint(0, 5, (64,), generator=generator)


def loop_perturbations(
    model: Staged, depth: int, x: torch.Tensor, y: torch.Tensor, probe: torch.Tensor, lr: float, indices
) -> np.ndarray:
    """Reference: one torch.optim.SGD step per mini-batch on a float64 copy, running stats restored."""
    reference = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        h0 = nn.Sequential(*reference.stages[:depth])(probe.double())
    rows = []
    for idx in indices:
        stepped = copy.deepcopy(model).double().train()
        optimizer = torch.optim.SGD(stepped.parameters(), lr=lr)
        F.cross_entropy(stepped(x[idx].double()), y[idx]).backward()
        optimizer.step()
        with torch.no_grad():
            for buffer, original in zip(stepped.buffers(), model.buffers()):
                buffer.copy_(original)
            stepped.eval()
            change = nn.Sequential(*stepped.stages[:depth])(probe.double()) - h0
        if change.ndim > 2:
            change = change.mean(dim=tuple(range(2, change.ndim)))
        rows.append(change.reshape(-1).numpy())
    return np.stack(rows)


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_batched_steps_equal_a_loop_of_single_steps(kind: str, mlp_data, cnn_data) -> None:
    model_factory, (x, y) = (tiny_mlp, mlp_data) if kind == "mlp" else (tiny_cnn, cnn_data)
    model = warmed_up(model_factory(), x)
    probe, depth, lr, batch_size, m = x[:3], 2, 0.5, 16, 12
    delta, info = one_step_perturbations(
        model, depth, x, y, probe, lr=lr, batch_size=batch_size, M=m, seed=4, chunk_size=5
    )
    indices = minibatch_indices(len(x), batch_size, m, seed=4)
    np.testing.assert_array_equal(info["batch_indices"], indices)
    expected = loop_perturbations(model, depth, x, y, probe, lr, indices)
    np.testing.assert_allclose(delta, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_model_is_untouched_and_perturbations_are_sane(kind: str, mlp_data, cnn_data) -> None:
    model_factory, (x, y) = (tiny_mlp, mlp_data) if kind == "mlp" else (tiny_cnn, cnn_data)
    model = warmed_up(model_factory(), x)
    before, rng_before = state_snapshot(model), torch.get_rng_state()
    delta, info = one_step_perturbations(model, 1, x, y, x[:4], lr=0.1, batch_size=8, M=20, seed=0)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not model.training and torch.equal(torch.get_rng_state(), rng_before)
    features = 12 if kind == "mlp" else 6
    assert delta.shape == (20, 4 * features) and delta.dtype == np.float64
    assert info["p"] == 4 * features and info["reduce"] == "gap" and not info["projected"]
    assert np.all(np.linalg.norm(delta, axis=1) > 0)
    assert np.linalg.matrix_rank(delta - delta.mean(axis=0)) > 1


def test_projection_reduction(cnn_data) -> None:
    x, y = cnn_data
    model = warmed_up(tiny_cnn(), x)
    delta, info = one_step_perturbations(
        model, 1, x, y, x[:2], lr=0.1, batch_size=8, M=10, reduce="proj", p_max=32
    )
    assert delta.shape == (10, 32)
    assert info["projected"] and info["raw_dim"] == 2 * 6 * 6 * 6 and info["p"] == 32
    small, small_info = one_step_perturbations(model, 1, x, y, x[:1], lr=0.1, batch_size=8, M=10, p_max=32)
    assert small.shape == (10, 6) and not small_info["projected"]
    with pytest.raises(ValueError):
        one_step_perturbations(model, 1, x, y, x[:1], lr=0.1, batch_size=8, M=10, reduce="pca")
    with pytest.raises(ValueError):
        one_step_perturbations(model, 3, x, y, x[:1], lr=0.1, batch_size=8, M=10)


def test_determinism_and_dropout(mlp_data) -> None:
    x, y = mlp_data
    model = warmed_up(tiny_mlp(dropout=0.3), x)
    before = state_snapshot(model)
    kwargs = dict(lr=0.2, batch_size=16, M=10, chunk_size=4)
    first, _ = one_step_perturbations(model, 1, x, y, x[:2], seed=7, **kwargs)
    again, _ = one_step_perturbations(model, 1, x, y, x[:2], seed=7, **kwargs)
    other, _ = one_step_perturbations(model, 1, x, y, x[:2], seed=8, **kwargs)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert all(torch.equal(before[name], model.state_dict()[name]) for name in before)


# --- pipeline stage -----------------------------------------------------------------------------

STAGE_SETTINGS = IsotropySettings(
    M=12, n_probe=3, p_max=64, B=100, seed=2, chunk_size=5, grad_precision="fp64"
)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stage(tiny_store_path, tmp_path_factory) -> dict:
    """The stage at epoch 3 (after the lr milestone), depth 2, with the store checked before and after."""
    store = CheckpointStore(tiny_store_path)
    digest, state = sha256(tiny_store_path), store.state_dict(3)
    cache = tmp_path_factory.mktemp("isotropy_cache")
    result = isotropy_at_checkpoint(store, tiny_arrays(), 3, 2, 40, STAGE_SETTINGS, cache_dir=cache)
    assert sha256(tiny_store_path) == digest
    assert all(torch.equal(state[name], value) for name, value in store.state_dict(3).items())
    return {"store": store, "result": result, "cache": cache}


def test_stage_equals_a_loop_of_sgd_steps_with_the_runs_lr(stage) -> None:
    store, result = stage["store"], stage["result"]
    assert result["lr"] == pytest.approx(0.005)  # recipe lr 0.05, ×0.1 after the milestone at epoch 2
    arrays = tiny_arrays()
    data = tensor_data(arrays)
    probe = subset_indices(len(arrays.y_train), 3, STAGE_SETTINGS.seed)
    indices = minibatch_indices(len(arrays.y_train), 40, 12, minibatch_seed(STAGE_SETTINGS.seed, 3))
    expected = loop_perturbations(
        store.model_at(3), 2, data.x_train, data.y_train, data.x_train[probe], 0.005, indices
    )
    np.testing.assert_allclose(result["delta"], expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(result["probe_indices"], probe)


def test_stage_file_holds_the_statistics(stage, tmp_path) -> None:
    result = stage["result"]
    path = tmp_path / "e3_d2.h5"
    write_isotropy(result, path, {"isotropy": {"M": 12}, "run": "tiny", "epoch": 3, "depth": 2})
    back = read_isotropy(path)
    delta = back["delta"]
    assert delta.shape == (12, 48) and back["M"] == 12 and back["p"] == 48  # 3 probes × 16 channels
    assert back["epoch"] == 3 and back["depth"] == 2 and back["batch_size"] == 40 and back["reduce"] == "gap"
    covariance = np.cov(delta, rowvar=False)
    eigenvalues = back["eigenvalues"]
    np.testing.assert_allclose(eigenvalues, np.linalg.eigvalsh(covariance)[::-1][:12], rtol=1e-8, atol=1e-14)
    assert back["total_variance"] == pytest.approx(np.trace(covariance), rel=1e-10)
    np.testing.assert_allclose(back["top_shares"], eigenvalues[:5] / np.trace(covariance), rtol=1e-8)
    assert back["effective_rank"] == pytest.approx(
        np.trace(covariance) ** 2 / np.sum(covariance**2), rel=1e-8
    )
    assert back["isotropic_eigenvalues"].shape == (12,)
    assert back["isotropic_eigenvalues"].sum() == pytest.approx(back["total_variance"], rel=1e-10)
    null = np.load(stage["cache"] / "isotropic_null_M12_p48_B100_seed2.npy")
    assert null.shape == (100,) and back["bootstrap_p"] == bootstrap_pvalue(back["T"], null)
    direct = perturbation_stats(delta)
    for name in ("T", "john_p", "czz_p", "john_z", "czz_z"):
        assert back[name] == pytest.approx(direct[name], rel=1e-10, abs=1e-300)
    assert json.loads(back["config"]) == {"isotropy": {"M": 12}, "run": "tiny", "epoch": 3, "depth": 2}

    row = isotropy_row(back, "tiny")
    assert row["run"] == "tiny" and row["top_share_1"] == pytest.approx(back["top_shares"][0])
    assert not set(row) & {"delta", "eigenvalues", "config", "featdyn_version"}
    tidy = top_share_frame(pd.DataFrame([row]))
    assert sorted(tidy["rank"]) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(tidy.sort_values("rank")["share"], back["top_shares"][:5])


def test_stage_uses_the_runs_labels_and_fp32_gradients_are_close(stage) -> None:
    """Other labels in the dataset file change nothing (the store's labels count); fp32 gradients
    move the perturbations by far less than their size."""
    arrays = tiny_arrays()
    relabelled = dataclasses.replace(arrays, y_train=np.roll(arrays.y_train, 1))
    settings = dataclasses.replace(STAGE_SETTINGS, grad_precision="fp32")
    fp32 = isotropy_at_checkpoint(stage["store"], relabelled, 3, 2, 40, settings, cache_dir=stage["cache"])
    reference = stage["result"]["delta"]
    assert np.abs(fp32["delta"] - reference).max() < 1e-3 * np.abs(reference).max()
    assert fp32["grad_dtype"] == "torch.float32" and fp32["dtype"] == "torch.float64"


def test_isotropy_keys_and_memory_depths() -> None:
    config = tiny_config()
    config["isotropy"].update(runs=None, epochs=[], stride=2, depths=[1, 2])
    config["composite"].update(runs=["m1d-clean"], depths=[2])
    keys = isotropy_keys(config)
    assert keys[:6] == [("m1d-clean", e, d) for e in (0, 2, 4) for d in (1, 2)]
    assert {r for r, _, _ in keys} == set(config["runs"])
    assert len(keys) == 3 * 3 * 2 + 3  # m1d-vit has its own isotropy depths: [3]
    assert [d for r, _, d in keys if r == "m1d-vit"] == [3, 3, 3]
    assert isotropy_keys(config, figure_only=True)[:2] == [("m1d-clean", 4, 1), ("m1d-clean", 4, 2)]
    config["isotropy"]["figure_epoch"] = 0
    assert {e for _, e, _ in isotropy_keys(config, figure_only=True)} == {0}
    assert memory_depths(config, "m1d-clean") == [2] and memory_depths(config, "m1d-noisy") == []
    config["isotropy"]["runs"] = []
    assert isotropy_keys(config) == []


def test_checkpoint_epochs() -> None:
    saved = list(range(0, 41))
    assert checkpoint_epochs(saved, [40, 5, 10], stride=1) == [5, 10, 40]
    assert checkpoint_epochs(saved, [], stride=10) == [0, 10, 20, 30, 40]
    assert checkpoint_epochs([0, 3, 6, 7], [], stride=2) == [3, 7]
    assert minibatch_seed(0, 5) != minibatch_seed(0, 6) and minibatch_seed(0, 5) == minibatch_seed(0, 5)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("runs", ["m1d-clean", "nope"], "`isotropy.runs`: 'nope' is not one of"),
        ("epochs", [2, 9], "`isotropy.epochs`: 9 is not allowed for run 'm1d-clean'"),
        ("depths", [2, 5], "`isotropy.depths`: depth 5 does not exist"),
        ("figure_epoch", 3, "`isotropy.figure_epoch`: 3 is not one of the allowed values [0, 4]"),
    ],
)
def test_config_errors_name_the_key(key: str, value, message: str) -> None:
    config = tiny_config()
    config["isotropy"][key] = value
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert message in str(error.value)
