"""Regression load (paper 2, SM S5, Fig. S12): the optimal affine regressor's RMSE per layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from featdyn.data import TensorData
from featdyn.models import deep_mlp
from featdyn.regression_load import (
    RegressionSettings,
    regression_load,
    regression_load_curve,
    smooth_target,
    train_regression,
)
from featdyn.train import Recipe, TrainSpec, make_optimizer, squared_error, train_epoch


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    pass


def lstsq_rmse(features: np.ndarray, target: np.ndarray) -> float:
    design = np.column_stack([features.reshape(len(features), -1), np.ones(len(features))])
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    return float(np.sqrt(np.mean((design @ coef - target) ** 2)))


@pytest.mark.parametrize(
    ("n", "shape", "duplicate"),
    [(200, (7,), False), (120, (3, 4), False), (80, (9,), True), (10, (30,), False)],
)
def test_regression_load_is_lstsq_residual_rmse(n: int, shape: tuple[int, ...], duplicate: bool) -> None:
    rng = np.random.default_rng(n)
    features = rng.standard_normal((n, *shape)) * 3 + 5
    if duplicate:  # rank-deficient: repeated and collinear columns
        features[:, 1] = features[:, 0]
        features[:, 2] = 2 * features[:, 3] - features[:, 4]
    target = np.sin(features.reshape(n, -1).sum(1)) + 0.3 * rng.standard_normal(n) + 2.0
    expected = lstsq_rmse(features, target)
    assert regression_load(features, target) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert regression_load(torch.as_tensor(features, dtype=torch.float32), target) == pytest.approx(
        lstsq_rmse(features.astype(np.float32).astype(np.float64), target), rel=1e-6, abs=1e-6
    )


def test_hand_values() -> None:
    t = np.array([1.0, 2.0, 4.0, 9.0])
    assert regression_load(np.ones((4, 3)), t) == pytest.approx(
        np.std(t)
    )  # constant features: intercept only
    f = np.random.default_rng(0).standard_normal((50, 3))
    assert regression_load(f, f @ [1.0, -2.0, 0.5] + 7) == pytest.approx(0.0, abs=1e-12)
    assert regression_load(np.arange(4.0)[:, None], [0.0, 1.0, 0.0, 1.0]) == pytest.approx(np.sqrt(0.2))


def test_load_curve_over_stages_restores_mode() -> None:
    torch.manual_seed(0)
    model = deep_mlp(6, 1, width=8, n_hidden=3)
    x = torch.randn(40, 6)
    t = smooth_target(x, seed=1)
    model.train()
    curve = regression_load_curve(model, x, t)
    assert curve.shape == (5,) and model.training
    assert curve[0] == pytest.approx(lstsq_rmse(x.double().numpy(), t.double().numpy()), rel=1e-6)
    model.eval()
    with torch.no_grad():
        hidden = model(x, 0, 2)
    assert curve[2] == pytest.approx(lstsq_rmse(hidden.double().numpy(), t.double().numpy()), rel=1e-6)


def test_smooth_target_is_a_fixed_function_of_the_input() -> None:
    x = torch.randn(30, 5)
    t = smooth_target(x, seed=4)
    torch.testing.assert_close(smooth_target(x[10:20], seed=4), t[10:20])
    assert not torch.allclose(smooth_target(x, seed=5), t)
    assert t.shape == (30,) and t.std() > 0.05
    assert regression_load(x, t) > 0.05  # not linear in x


def test_squared_error_by_hand() -> None:
    out, target = torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert squared_error(out, target).item() == pytest.approx((1 + 4 + 0 + 4) / 2)
    assert squared_error(torch.tensor([[3.0], [1.0]]), torch.tensor([1.0, 1.0])).item() == pytest.approx(2.0)


def test_squared_loss_epoch_is_seeded_and_descends() -> None:
    x = torch.randn(64, 4)
    t = smooth_target(x, seed=0)
    data = TensorData(x, t, x[:0], t[:0], 1)
    spec = TrainSpec(Recipe(optimizer="adam", lr=1e-2, weight_decay=0.0, batch_size=16), 30, seed=3)

    def run() -> list[tuple[float, float]]:
        torch.manual_seed(0)
        model = deep_mlp(4, 1, width=16, n_hidden=2, dropout=0.1)
        opt = make_optimizer(model, spec.recipe)
        return [train_epoch(model, opt, data, spec, e, squared_error) for e in range(1, 31)]

    epochs = run()
    losses = [loss for loss, _ in epochs]
    assert np.array_equal(epochs, run(), equal_nan=True)
    assert losses[-1] < 0.5 * losses[0]
    assert all(np.isnan(acc) for _, acc in epochs)  # float targets: no accuracy


def test_noisy_training_is_convex_and_lazy_training_concave() -> None:
    g = torch.Generator().manual_seed(0)
    x, x_test = torch.randn(512, 10, generator=g), torch.randn(256, 10, generator=g)
    t, t_test = smooth_target(x, 0, frequency=2.0), smooth_target(x_test, 0, frequency=2.0)
    lazy_settings = RegressionSettings(n_hidden=5, width=32, epochs=60, curve_every=30)
    lazy = train_regression(x, t, x_test, t_test, lazy_settings, seed=0)
    noisy = train_regression(x, t, x_test, t_test, replace(lazy_settings, dropout=0.2), seed=0)
    assert lazy.train_load.shape == (3, 7) and lazy.test_load.shape == (7,) and lazy.epoch_loss.shape == (60,)
    assert lazy.train_load[-1, 0] == pytest.approx(regression_load(x, t), rel=1e-9)
    assert lazy.curvature < 0 < noisy.curvature
    assert lazy.train_rmse < noisy.train_rmse  # noise keeps the training fit loose
    again = train_regression(x, t, x_test, t_test, lazy_settings, seed=0)
    np.testing.assert_array_equal(again.train_load, lazy.train_load)
