"""Trajectories, decision regions, PCA perturbation and drift against direct per-epoch computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_arrays, tiny_config

from featdyn.checkpoints import CheckpointStore
from featdyn.config import ConfigError, check_config
from featdyn.data import tensor_data
from featdyn.dynamics import (
    compute_drift,
    compute_trajectories,
    parameter_drift,
    pca_perturbation,
    perturbed_predictions,
    principal_directions,
    read_drift,
    read_trajectories,
    region_grid,
    window_epochs,
    write_drift,
    write_trajectories,
)
from featdyn.models import build_model
from featdyn.train import Recipe, TrainSpec, train_run

pytestmark = pytest.mark.usefixtures("one_thread")


def signals():
    return tiny_arrays(n_train=200, n_test=60, noise=0.3)


def train(tmp_path, model_name: str, epochs: int) -> CheckpointStore:
    arrays = signals()
    data = tensor_data(arrays)
    torch.manual_seed(0)
    model = build_model(model_name, data.sample_shape, 10)
    spec = TrainSpec(Recipe(optimizer="sgd", lr=0.05, batch_size=50), epochs, 1, 0)
    path = tmp_path / "checkpoints.h5"
    train_run(
        model,
        data,
        spec,
        state_dir=tmp_path / "state",
        out_path=path,
        model_spec={"name": model_name, "sample_shape": [40], "classes": 10, "options": {}},
        labels={"train": arrays.y_train},
        provenance={"test": model_name},
        progress=False,
    )
    return CheckpointStore(path)


@pytest.fixture(scope="module")
def bottleneck(tmp_path_factory) -> CheckpointStore:
    return train(tmp_path_factory.mktemp("bottleneck"), "bottleneck_mlp", 6)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> CheckpointStore:
    return train(tmp_path_factory.mktemp("resnet"), "resnet1d", 4)


@pytest.fixture(scope="module")
def x_train() -> torch.Tensor:
    return tensor_data(signals()).x_train


def test_trajectories_are_the_features_of_each_checkpoint(bottleneck, x_train, tmp_path):
    traj = compute_trajectories(bottleneck, x_train, np.zeros(len(x_train)), np.arange(len(x_train)), 2, 50)
    assert traj.features.shape == (len(bottleneck.epochs), len(x_train), 2)
    with torch.no_grad():
        for i, epoch in enumerate(bottleneck.epochs):
            direct = bottleneck.model_at(epoch)(x_train, 0, 2).numpy()
            np.testing.assert_allclose(traj.features[i], direct, rtol=1e-5, atol=1e-6)
    write_trajectories(traj, tmp_path / "t.h5", {"test": 1})
    back = read_trajectories(tmp_path / "t.h5")
    np.testing.assert_array_equal(back.regions.classes, traj.regions.classes)
    np.testing.assert_array_equal(back.features, traj.features)


def test_region_grid_agrees_with_deep_part_on_training_features(bottleneck, x_train):
    traj = compute_trajectories(bottleneck, x_train, np.zeros(len(x_train)), np.arange(len(x_train)), 2, 400)
    final = bottleneck.model_at(bottleneck.epochs[-1])
    with torch.no_grad():
        features = final(x_train, 0, 2)
        expected = final(features, 2, None).argmax(1).numpy()
        np.testing.assert_array_equal(traj.final_prediction, expected)
        np.testing.assert_array_equal(final(x_train).argmax(1).numpy(), expected)
    looked_up = traj.regions.lookup(features.numpy())
    assert np.mean(looked_up == expected) >= 0.97
    # a disagreement can only sit next to a region boundary: a neighbouring cell has the right class
    grid = traj.regions
    for i in np.flatnonzero(looked_up != expected):
        ix = int(np.argmin(np.abs(grid.xs - features[i, 0].item())))
        iy = int(np.argmin(np.abs(grid.ys - features[i, 1].item())))
        neighbourhood = grid.classes[max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2]
        assert expected[i] in neighbourhood


def test_region_grid_of_a_linear_classifier_matches_closed_form():
    weight = torch.tensor([[1.3, 0.1], [-0.2, 1.1], [-0.9, -1.2]])
    bias = torch.tensor([0.0537, -0.1291, 0.2113])  # no ties on the grid
    grid = region_grid(lambda h: h @ weight.T + bias, torch.zeros(2), torch.eye(2), ((-1, 1), (-2, 2)), 21)
    gx, gy = np.meshgrid(grid.xs, grid.ys)
    scores = (
        np.einsum("kj,jyx->kyx", weight.double().numpy(), np.stack([gx, gy])) + bias.numpy()[:, None, None]
    )
    np.testing.assert_array_equal(grid.classes, scores.argmax(0))
    assert len(np.unique(grid.classes)) == 3
    assert grid.classes.shape == (21, 21) and grid.xs[0] == -1 and grid.ys[-1] == 2


def test_principal_directions_match_numpy_pca():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((200, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    features = features @ np.linalg.qr(rng.standard_normal((6, 6)))[0]
    mean, directions, std = principal_directions(torch.from_numpy(features))
    eigvals, eigvecs = np.linalg.eigh(np.cov(features.T))
    top = eigvecs[:, ::-1][:, :2].T
    np.testing.assert_allclose(np.abs(directions.numpy() @ top.T), np.eye(2), atol=1e-8)
    np.testing.assert_allclose(std.numpy() ** 2, eigvals[::-1][:2], rtol=1e-8)
    np.testing.assert_allclose(mean.numpy(), features.mean(0))


def test_perturbed_predictions_match_direct_evaluation():
    torch.manual_seed(0)
    deep = torch.nn.Linear(5, 4)
    features, directions, noise = torch.randn(30, 5), torch.randn(2, 5), torch.randn(3, 30, 2)
    with torch.no_grad():
        got = perturbed_predictions(deep, features, directions, noise, batch_size=7)
        for d in range(3):
            direct = deep(features + noise[d] @ directions).argmax(1)
            assert torch.equal(got[d], direct)


def test_pca_perturbation_agreement(resnet, x_train):
    labels = torch.as_tensor(resnet.labels["train"])
    result = pca_perturbation(
        resnet, x_train[:80], labels[:80], 2, [0.0, 1.0, 1e4], history=3, draws=2, resolution=20
    )
    assert list(result.epochs) == window_epochs(resnet.epochs, None, 3) == [1, 2, 3, 4]
    assert result.agreement[0, -1] == 1.0  # no noise, epoch T: g^(T)(h^(T)(x)) is f^(T)(x)
    assert result.agreement[2].max() < 0.9  # huge noise moves features far from the data
    with torch.no_grad():  # unperturbed agreement of an earlier epoch, computed directly
        model_t, model_s = resnet.model_at(4), resnet.model_at(2)
        direct = model_t(model_s(x_train[:80], 0, 2), 2, None).argmax(1) == model_t(x_train[:80]).argmax(1)
    assert result.agreement[0, 1] == pytest.approx(direct.double().mean().item())
    np.testing.assert_allclose(result.components @ result.components.T, np.eye(2), atol=1e-5)


def test_drift_is_zero_at_the_end_and_matches_direct_computation(resnet, x_train, tmp_path):
    x = x_train[:50]
    drift = compute_drift(resnet, [1, 3], x, memory_budget_mb=0.05)  # tiny budget: several chunks
    assert np.all(drift.parameter_drift[-1] == 0) and np.all(drift.feature_drift[-1] == 0)
    final = resnet.model_at(resnet.epochs[-1])
    final_params = dict(final.named_parameters())
    with torch.no_grad():
        for i, epoch in enumerate(resnet.epochs):
            model = resnet.model_at(epoch)
            for k, stage in enumerate(model.stages):
                names = [f"stages.{k}.{n}" for n, _ in stage.named_parameters()]
                params = dict(model.named_parameters())
                diff = torch.cat([(params[n].double() - final_params[n].double()).flatten() for n in names])
                norm = torch.cat([final_params[n].flatten() for n in names]).double().norm()
                assert drift.parameter_drift[i, k] == pytest.approx((diff.norm() / norm).item(), rel=1e-9)
            for j, depth in enumerate([1, 3]):
                h, h_final = model(x, 0, depth).flatten(1), final(x, 0, depth).flatten(1)
                direct = ((h - h_final).norm(dim=1) / h_final.norm(dim=1)).mean().item()
                assert drift.feature_drift[i, j] == pytest.approx(direct, rel=1e-4, abs=1e-6)
    assert drift.feature_drift[0, 0] > 0.1
    write_drift(drift, tmp_path / "d.h5", {"test": 1})
    np.testing.assert_array_equal(read_drift(tmp_path / "d.h5").parameter_drift, drift.parameter_drift)


def test_parameter_drift_ignores_batchnorm_buffers(resnet):
    names = [n for n in resnet.state_names if "running" in n or "num_batches" in n]
    assert names  # the ResNet has BatchNorm buffers, which are not parameters
    assert parameter_drift(resnet, resnet.epochs).shape == (len(resnet.epochs), 5)


def test_config_rejects_trajectories_of_a_feature_that_is_not_2d():
    config = tiny_config()
    check_config(config)
    config["dynamics"]["trajectories"]["runs"] = ["m1d-clean"]
    with pytest.raises(ConfigError, match=r"dynamics\.trajectories\.runs.*not 2"):
        check_config(config)
    config = tiny_config()
    config["dynamics"]["pca"]["reference_epoch"] = 9
    with pytest.raises(ConfigError, match=r"dynamics\.pca\.reference_epoch"):
        check_config(config)
