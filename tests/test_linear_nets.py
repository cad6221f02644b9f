"""Deep linear networks of paper 2's Fig. 5(a): orthogonal initialisation, orthogonal data, load curves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from featdyn.linear_nets import LinearNetSettings, orthogonal_data, train_linear_net
from featdyn.models import build_model, linear_net
from featdyn.separation import load_curve


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    pass


def weights(model: nn.Module) -> list[np.ndarray]:
    return [m.weight.detach().double().numpy() for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(("in_features", "width"), [(32, 32), (48, 32), (16, 32)])
def test_every_weight_is_orthogonal_at_initialisation(in_features: int, width: int) -> None:
    model = linear_net(in_features, 2, width=width, n_hidden=4, seed=3)
    ws = weights(model)
    assert [w.shape for w in ws] == [(width, in_features), *[(width, width)] * 3, (2, width)]
    for w in ws:
        rows, cols = w.shape
        gram = w @ w.T if rows <= cols else w.T @ w  # semi-orthogonal: the shorter side is orthonormal
        np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-6)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    scaled = weights(linear_net(in_features, 2, width=width, n_hidden=4, init_scale=0.5, seed=3))
    np.testing.assert_allclose(scaled[1] @ scaled[1].T, 0.25 * np.eye(width), atol=1e-6)


def test_registered_linear_net_flattens_and_is_the_same_network() -> None:
    registered = build_model("linear_net", (1, 4, 4), 2, width=16, n_hidden=3, seed=5)
    direct = linear_net(16, 2, width=16, n_hidden=3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(weights(registered), weights(direct), strict=True))
    x = torch.randn(3, 1, 4, 4)
    torch.testing.assert_close(registered(x), direct(x.reshape(3, 16)))


def test_default_pytorch_init_would_fail_the_orthogonality_check() -> None:
    w = nn.Linear(32, 32, bias=False).weight.detach().double().numpy()
    assert np.abs(w @ w.T - np.eye(32)).max() > 0.1


def test_initialisation_is_seeded() -> None:
    a, b, c = (weights(linear_net(16, 2, 16, 3, seed=s)) for s in (0, 0, 1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.allclose(a[0], c[0])


@pytest.mark.parametrize(("n", "d"), [(32, 32), (16, 40), (40, 16)])
def test_orthogonal_data_and_balanced_binary_labels(n: int, d: int) -> None:
    x, y = orthogonal_data(n, d, seed=2)
    x64 = x.double().numpy()
    gram = x64 @ x64.T if n <= d else x64.T @ x64
    np.testing.assert_allclose(gram, np.eye(min(n, d)), atol=1e-6)
    assert set(y.tolist()) == {0, 1} and int(y.sum()) == n // 2
    x2, y2 = orthogonal_data(n, d, seed=2)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_initial_load_curve_is_flat_at_the_hand_computed_input_separation() -> None:
    # orthonormal samples, 16 per class: Tr Σ_w = 30/32, Tr Σ_b = 1/32, and rotations keep both traces
    x, y = orthogonal_data(32, 32, seed=0)
    curve = load_curve(linear_net(32, 2, 32, 5, seed=0), x, y, 2)["D"]
    np.testing.assert_allclose(curve[:-1], np.log(30.0), atol=1e-5)


def test_model_is_linear() -> None:
    model = linear_net(8, 2, 8, 3, seed=0)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    torch.testing.assert_close(model(2 * a - 3 * b), 2 * model(a) - 3 * model(b), atol=1e-5, rtol=1e-5)


def test_noise_bends_the_load_curve_convex() -> None:
    tiny = LinearNetSettings(n_samples=16, dim=16, width=16, n_hidden=4, lr=1e-2, batch_size=4, epochs=300)
    small = train_linear_net(replace(tiny, curve_every=100), seed=0)
    large = train_linear_net(replace(tiny, lr=0.3, epochs=150, curve_every=50), seed=0)
    dropout = train_linear_net(replace(tiny, dropout=0.2, curve_every=100), seed=0)
    assert small.D.shape == (4, 6) and small.he_su.shape == (4, 6) and small.epoch_loss.shape == (300,)
    np.testing.assert_array_equal(small.curve_epochs, [0, 100, 200, 300])
    assert small.train_acc == 1.0 and small.epoch_loss[-1] < 1e-4
    assert abs(small.curvature) < 0.03 < large.curvature < dropout.curvature
    again = train_linear_net(replace(tiny, dropout=0.2, curve_every=100), seed=0)
    np.testing.assert_array_equal(again.D, dropout.D)
