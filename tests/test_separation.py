"""Layer-wise data separation against direct NumPy formulas, streaming, load curves and their figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featdyn.checkpoints import CheckpointStore
from featdyn.curvature import curvature, layer_loads
from featdyn.plots.separation import (
    plot_accuracy_vs_curvature,
    plot_load_curves,
    plot_phase_diagram,
    plot_run_separation,
)
from featdyn.separation import (
    SeparationAccumulator,
    load_curve,
    read_separation,
    run_separation,
    separation_measures,
    write_separation,
)


def clustered_data(
    n: int = 240, p: int = 12, n_classes: int = 4, absent: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random class centres far from the origin; class `absent` gets no sample."""
    rng = np.random.default_rng(seed)
    present = [c for c in range(n_classes) if c != absent]
    labels = rng.choice(present, size=n)
    centres = 2.0 * rng.normal(size=(n_classes, p)) + 50.0
    return centres[labels] + rng.normal(size=(n, p)) * rng.uniform(0.5, 2.0, size=p), labels


def direct_measures(x: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """docs/definitions.md §9 literally: p×p covariances and an explicit pseudo-inverse."""
    n, p = x.shape
    mean = x.mean(0)
    within, between = np.zeros((p, p)), np.zeros((p, p))
    for c in range(n_classes):
        xc = x[labels == c]
        if len(xc) == 0:
            continue
        centred = xc - xc.mean(0)
        within += centred.T @ centred / n
        between += len(xc) / n * np.outer(xc.mean(0) - mean, xc.mean(0) - mean)
    return {
        "tr_within": np.trace(within),
        "tr_between": np.trace(between),
        "D": np.log(np.trace(within) / np.trace(between)),
        "he_su": np.trace(within @ np.linalg.pinv(between)),
    }


@pytest.mark.parametrize(("p", "absent"), [(12, None), (12, 2), (2, None)])
def test_measures_match_direct_numpy(p: int, absent: int | None) -> None:
    x, labels = clustered_data(p=p, n_classes=5, absent=absent)
    ours = separation_measures(torch.tensor(x, dtype=torch.float32), torch.tensor(labels), 5)
    reference = direct_measures(x.astype(np.float32).astype(np.float64), labels, 5)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, rel=1e-9), key


def test_measures_flatten_feature_maps() -> None:
    x, labels = clustered_data(p=12)
    flat = separation_measures(x, labels, 4)
    maps = separation_measures(x.reshape(-1, 3, 2, 2), labels, 4)
    assert maps == pytest.approx(flat)


def test_d_is_invariant_to_feature_scaling() -> None:
    x, labels = clustered_data()
    assert separation_measures(1e-3 * x, labels, 4)["D"] == pytest.approx(
        separation_measures(x, labels, 4)["D"]
    )
    assert separation_measures(7.0 * x, labels, 4)["D"] == pytest.approx(
        separation_measures(x, labels, 4)["D"]
    )


def test_streaming_in_batches_equals_one_shot() -> None:
    x, labels = clustered_data(n=301, absent=1)
    acc = SeparationAccumulator(4, x.shape[1])
    batches = [slice(start, start + 37) for start in range(0, len(x), 37)]
    for batch in batches:
        acc.update(x[batch], labels[batch])
    acc.begin_second_pass()
    for batch in batches:
        acc.update(x[batch], labels[batch])
    assert acc.result() == pytest.approx(separation_measures(x, labels, 4), rel=1e-10)


def test_he_su_needs_a_complete_second_pass() -> None:
    x, labels = clustered_data()
    acc = SeparationAccumulator(4, x.shape[1])
    acc.update(x, labels)
    assert np.isnan(acc.result()["he_su"])
    acc.begin_second_pass()
    acc.update(x[:10], labels[:10])
    assert np.isnan(acc.result()["he_su"])


class TinyStaged(nn.Module):
    """Three stages: two hidden Linear+ReLU layers and a linear head."""

    def __init__(self, p: int = 12, width: int = 8, n_classes: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(p, width), nn.BatchNorm1d(width), nn.ReLU()),
                nn.Sequential(nn.Linear(width, width), nn.ReLU()),
                nn.Linear(width, n_classes),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def test_load_curve_covers_input_and_every_stage() -> None:
    torch.manual_seed(0)
    x, labels = clustered_data(n=150)
    x = torch.tensor(x, dtype=torch.float32)
    model = TinyStaged().train()
    curve = load_curve(model, x, torch.tensor(labels), 4, batch_size=64)
    assert model.training
    assert set(curve) == {"D", "he_su", "tr_within", "tr_between"}
    assert all(values.shape == (4,) for values in curve.values())
    assert curve["D"][0] == pytest.approx(separation_measures(x, labels, 4)["D"])
    with torch.no_grad():
        model.eval()
        logits = model(x)
    assert curve["D"][-1] == pytest.approx(separation_measures(logits, labels, 4)["D"], rel=1e-6)


def test_curvature_sign_and_layer_loads() -> None:
    layers = np.arange(8)
    assert curvature(-np.sqrt(layers + 1.0)) > 0  # decreasing, flattening: shallow layers take the load
    assert curvature(5.0 - 0.7 * layers) == pytest.approx(0.0, abs=1e-12)
    assert curvature(-(layers**2) / 10.0) < 0  # deep layers take the load
    np.testing.assert_allclose(layer_loads(5.0 - 0.7 * layers), np.full(7, 0.7))
    np.testing.assert_allclose(curvature(np.stack([layers**2, -(layers**2)])), [2.0, -2.0])


def test_plot_load_curves_returns_one_axis() -> None:
    frame = pd.DataFrame(
        [
            {"layer": layer, "D": 2.0 - 0.3 * layer * epoch, "epoch": epoch}
            for epoch in (1, 5)
            for layer in range(8)
        ]
    )
    fig = plot_load_curves(frame)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 1
    plt.close(fig)


def test_plot_phase_diagram_has_a_panel_per_noise_axis_and_two_colorbars() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        [
            {"axis": axis, "level": level, "alpha": alpha, "seed": seed}
            for axis, levels in {"dropout": (0.0, 0.1, 0.2), "lr": (1e-4, 1e-3, 1e-2)}.items()
            for level in levels
            for alpha in (0.0, 0.5, 1.0)
            for seed in range(2)
        ]
    )
    frame["curvature"] = rng.normal(size=len(frame))
    frame["test_acc"] = rng.uniform(0.8, 0.95, size=len(frame))
    fig = plot_phase_diagram(frame)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 2 + 2
    plt.close(fig)


def test_run_separation_over_saved_epochs_and_file_round_trip(tiny_store_path, tiny_data, tmp_path) -> None:
    store = CheckpointStore(tiny_store_path)
    eval_sets = {
        "train": (tiny_data.x_train[:100], tiny_data.y_train[:100]),
        "test": (tiny_data.x_test, tiny_data.y_test),
    }
    epochs = store.epochs[::2]
    result = run_separation(store, eval_sets, epochs, batch_size=64)
    n_layers = store.build_model().n_stages + 1
    for name, (x, y) in eval_sets.items():
        assert result[name]["D"].shape == result[name]["he_su"].shape == (len(epochs), n_layers)
        reference = direct_measures(x.numpy().astype(np.float64), y.numpy(), 10)
        np.testing.assert_allclose(
            result[name]["D"][:, 0], reference["D"], rtol=1e-9
        )  # the input never changes
        hidden = result[name]["D"][:, :-1]
        np.testing.assert_allclose(
            result[name]["curvature"], np.diff(hidden, n=2, axis=1).mean(1), rtol=1e-12
        )
    last = load_curve(store.model_at(epochs[-1]), *eval_sets["test"], 10)
    np.testing.assert_allclose(result["test"]["D"][-1], last["D"])
    assert result["train"]["D"][-1, -1] < result["train"]["D"][0, -1]  # training separates the logits

    write_separation(result, epochs, tmp_path / "separation.h5", {"run": "tiny"})
    curves, bends = read_separation(tmp_path / "separation.h5")
    assert list(dict.fromkeys(curves["eval_set"])) == ["train", "test"]
    assert len(curves) == 2 * len(epochs) * n_layers and len(bends) == 2 * len(epochs)
    test_curves = curves[curves["eval_set"] == "test"].pivot(index="epoch", columns="layer", values="D")
    np.testing.assert_array_equal(test_curves.to_numpy(), result["test"]["D"])
    np.testing.assert_array_equal(
        bends.loc[bends["eval_set"] == "train", "curvature"], result["train"]["curvature"]
    )
    fig = plot_run_separation(curves, bends, "tiny")
    assert len(fig.axes) == 2 + 2 + 1  # two load-curve panels with colorbars, one curvature panel
    plt.close(fig)


def test_plot_accuracy_vs_curvature_has_a_panel_per_axis() -> None:
    frame = pd.DataFrame(
        {
            "axis": ["lr"] * 4 + ["dropout"] * 4,
            "level": [0.001, 0.001, 0.01, 0.01, 0.0, 0.0, 0.2, 0.2],
            "alpha": [0.0, 1.0] * 4,
            "curvature": np.linspace(-0.1, 0.1, 8),
            "test_acc": np.linspace(0.7, 0.8, 8),
        }
    )
    fig = plot_accuracy_vs_curvature(frame)
    assert len(fig.axes) == 2
    plt.close(fig)
