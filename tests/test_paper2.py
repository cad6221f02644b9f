"""Paper 2's stages: phase-sweep variants and their files, the μ_r = 0 chain and second-order tables, the
guided CNN over seeds, regression data, stored records, grey images, and every new figure."""

from __future__ import annotations

import copy
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from helpers import tiny_arrays, tiny_config

from featdyn.curvature import curvature
from featdyn.data import Arrays, TensorData, tensor_data
from featdyn.guided import GuidedSettings, guided_runs, guided_table, guided_training
from featdyn.io import read_records, write_records
from featdyn.linear_nets import LinearNetResult, LinearNetSettings, train_linear_net
from featdyn.phase import (
    CellResult,
    CellSettings,
    final_curves,
    phase_data,
    read_final_curves,
    to_grayscale,
    write_cell,
)
from featdyn.planning import (
    overlays,
    phase_cell_file,
    phase_cell_files,
    phase_cell_settings,
    phase_figure_cells,
    phase_variants,
)
from featdyn.plots.guided import plot_guided
from featdyn.plots.linear_nets import plot_fig5
from featdyn.plots.regression import plot_regression_load
from featdyn.plots.separation import plot_train_test_load_curves, plot_two_metrics
from featdyn.plots.springblock import plot_springblock_orders
from featdyn.regression_load import RegressionSettings, regression_data, smooth_target, train_regression
from featdyn.springblock import (
    leftward_friction_equilibrium,
    leftward_friction_table,
    phase_diagram,
    second_order_phase,
    spring_load_curve,
)
from featdyn.train import make_optimizer


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    pass


@pytest.fixture(scope="module")
def config():
    return tiny_config()


# --- planning: named changes and phase-sweep variants -------------------------------------------


def test_overlays_apply_changes_and_leave_out_removed_names():
    section = {"lr": 1.0, "epochs": 3, "trainings": {"a": {}, "b": {"lr": 2.0}, "gone": None}}
    assert {name: s["lr"] for name, s in overlays(section, "trainings").items()} == {"a": 1.0, "b": 2.0}
    assert overlays(section, "trainings")["b"]["epochs"] == 3


def test_variants_have_their_own_cells_files_and_settings(config):
    section = copy.deepcopy(config["phase"])
    section["variants"] = {
        "deep": {"n_hidden": 4, "alphas": [0.5], "axes": {"dropout": [0.0, 0.2]}},
        "sgd": {"optimizer": "sgd", "lr": 0.01},
        "removed": None,
    }
    assert phase_variants(section) == ["", "-deep", "-sgd"]
    assert phase_cell_files(section, "-deep") == [
        "results/phase/cells-deep/base_a0.5.h5",
        "results/phase/cells-deep/dropout-0.2_a0.5.h5",
    ]
    assert phase_cell_files(section, "") == [
        "results/phase/cells/base_a0.h5",
        "results/phase/cells/dropout-0.3_a0.h5",
    ]
    assert phase_cell_settings(section, "-deep", "dropout-0.2") == replace(
        phase_cell_settings(section, ""), n_hidden=4, dropout=0.2
    )
    sgd = phase_cell_settings(section, "-sgd")
    assert sgd.recipe().optimizer == "sgd" and sgd.recipe().lr == 0.01 and sgd.recipe().momentum == 0.9
    optimizer = make_optimizer(torch.nn.Linear(2, 2), sgd.recipe())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match="unknown phase variant 'removed'"):
        phase_cell_settings(section, "-removed")


def test_figure_cells_default_to_the_first_axis_and_slope(config):
    section = copy.deepcopy(config["phase"])
    section["axes"] = {"lr": [0.001, 0.01], "dropout": [0.0, 0.3]}
    section["alphas"] = [0.5, 0.0]
    section["figure_axis"], section["figure_alpha"] = None, None
    assert phase_figure_cells(section) == [("lr", 0.001, 0.5), ("lr", 0.01, 0.5)]
    section["figure_axis"], section["figure_alpha"] = "dropout", 0.0
    assert phase_figure_cells(section) == [("dropout", 0.0, 0.0), ("dropout", 0.3, 0.0)]
    assert phase_cell_file(section, "", "dropout", 0.0, 0.0) == "results/phase/cells/base_a0.h5"


# --- data of the variants: grey images ------------------------------------------------------------


def test_grayscale_is_the_luminance_and_the_sweep_resizes_after_it():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 3, 8, 8)).astype(np.uint8)
    by_hand = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]) / 255
    grey = to_grayscale(torch.as_tensor(x, dtype=torch.float64) / 255)
    np.testing.assert_allclose(grey[:, 0].numpy(), by_hand, rtol=1e-12)
    signals = torch.randn(4, 40)
    assert to_grayscale(signals) is signals
    arrays = Arrays(x, np.arange(6) % 2, x[:4], np.arange(4) % 2, 2, "synthetic")
    data = phase_data(arrays, CellSettings(n_train=6, image_size=4, grayscale=True), seed=0)
    assert data.x_train.shape == (6, 1, 4, 4) and data.x_test.shape == (4, 1, 4, 4)
    assert data.x_train.mean().abs() < 1e-5  # normalised after the grey conversion
    assert phase_data(arrays, CellSettings(n_train=6, image_size=4), seed=0).x_train.shape == (6, 3, 4, 4)


# --- spring–block tables of Figs. 5b, S13, S14 ----------------------------------------------------


def test_leftward_table_reaches_eq8_for_every_cell(config):
    section = copy.deepcopy(config["springblock"])
    section["leftward"] = {**section["leftward"], "eps": [0.0, 0.03], "mu_l": [0.1, 0.7], "n_steps": 2000}
    table = leftward_friction_table(section)
    n_layers = section["n_blocks"] + 1
    assert len(table) == 2 * 2 * n_layers
    assert table["max_error"].max() < 1e-6
    cell = table[(table["eps"] == 0.03) & (table["mu_l"] == 0.7)]
    expected = leftward_friction_equilibrium(0.03, 0.7, n_blocks=section["n_blocks"])
    np.testing.assert_allclose(cell["eq8"], spring_load_curve(expected), rtol=1e-12)
    np.testing.assert_allclose(cell["simulated"], cell["eq8"], atol=1e-6)
    bends = table.groupby("eps")["curvature_eq8"].first()
    assert bends[0.0] == pytest.approx(0.0, abs=1e-12) and bends[0.03] == pytest.approx(0.03)  # b ε / k


def test_second_order_table_has_one_phase_diagram_per_noise_placement(config):
    section = copy.deepcopy(config["springblock"])
    section["second_order"] = {**section["second_order"], "n_steps": 3000}
    table = second_order_phase(section)
    grid = section["phase"]
    n_cells = len(grid["eps"]) * len(grid["asymmetry"])
    assert list(dict.fromkeys(table["noise_on"])) == ["force", "velocity"] and len(table) == 2 * n_cells
    first = phase_diagram(
        grid["eps"], grid["asymmetry"], n_blocks=section["n_blocks"], n_chains=grid["n_chains"], n_steps=3000
    )
    for _, panel in table.groupby("noise_on"):
        assert list(panel.columns[:-1]) == list(first.columns)
        quiet = panel["eps"].to_numpy() == 0
        # noiseless, both orders stop in the concave equilibrium of Eq. 7
        np.testing.assert_allclose(panel["curvature"].to_numpy()[quiet], first["curvature"][quiet], atol=1e-6)


# --- the guided CNN over seeds, regression data, stored records ----------------------------------


def two_class_images(seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (80,), generator=g)
    x = 0.5 * torch.randn(80, 1, 4, 4, generator=g)
    x[y == 0, :, :, :2] += 1.0
    x[y == 1, :, :, 2:] += 1.0
    return TensorData(x[:48], y[:48], x[48:], y[48:], 2)


GUIDED = GuidedSettings(
    lr=1e-2, converge_loss=0.3, max_epochs=4, phase_epochs=2, dropouts=(0.0, 0.5), channels=2, n_conv=2
)


def test_guided_runs_key_every_phase_by_seed_and_replay_single_trainings(tmp_path):
    data = two_class_images()
    phases = guided_runs(data, GUIDED, [0, 3])
    names = ["converged", "dropout_0", "dropout_0.5"]
    assert list(phases) == [f"{seed}/{name}" for seed in (0, 3) for name in names]
    alone = guided_training(data.x_train, data.y_train, data.x_test, data.y_test, GUIDED, seed=3)
    for name in names:
        np.testing.assert_array_equal(phases[f"3/{name}"].train_D, alone[name].train_D)
    table = guided_table(phases)
    assert list(table["seed"]) == [0, 0, 0, 3, 3, 3] and list(table["phase"]) == names * 2
    assert table.loc[5, "test_acc"] == alone["dropout_0.5"].test_acc
    assert table.loc[5, "dropout"] == 0.5 and table.loc[5, "last_epoch"] == alone["dropout_0.5"].epochs[-1]
    write_records(tmp_path / "guided.h5", phases, {"seeds": [0, 3]})
    back = read_records(tmp_path / "guided.h5")
    assert list(back) == list(phases)
    np.testing.assert_array_equal(back["3/dropout_0"]["test_D"], phases["3/dropout_0"].test_D)
    fig = plot_guided(back)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_records_round_trip_as_dataclasses_or_dicts(tmp_path):
    result = train_linear_net(
        LinearNetSettings(n_samples=8, dim=8, width=8, n_hidden=3, epochs=3, curve_every=1)
    )
    write_records(tmp_path / "nets.h5", {"a": result, "b": result}, {"x": 1})
    typed = read_records(tmp_path / "nets.h5", LinearNetResult)
    assert list(typed) == ["a", "b"] and isinstance(typed["a"], LinearNetResult)
    np.testing.assert_array_equal(typed["b"].D, result.D)
    assert float(typed["a"].curvature) == result.curvature
    assert set(read_records(tmp_path / "nets.h5")["a"]) == set(vars(result))


def test_regression_data_is_a_seeded_subset_with_the_smooth_target():
    arrays = tiny_arrays()
    target = {"seed": 2, "n_components": 4, "frequency": 1.5}
    data = regression_data(arrays, 50, 7, target)
    full = tensor_data(arrays)
    assert data.x_train.shape == (50, 40) and data.classes == 1 and torch.equal(data.x_test, full.x_test)
    torch.testing.assert_close(data.y_train, smooth_target(data.x_train, 2, 4, 1.5))
    torch.testing.assert_close(data.y_test, smooth_target(full.x_test, 2, 4, 1.5))
    rows = [int(torch.nonzero((full.x_train == row).all(1))[0]) for row in data.x_train]
    assert rows == sorted(rows) and torch.equal(regression_data(arrays, 50, 7, target).x_train, data.x_train)
    assert not torch.equal(regression_data(arrays, 50, 8, target).x_train, data.x_train)


# --- the cells of the train vs test and two-metric figures ---------------------------------------


def hand_cell(seeds: int = 2, layers: int = 5, shift: float = 0.0) -> CellResult:
    rng = np.random.default_rng(seeds + layers)
    curves = np.cumsum(-rng.random((seeds, 3, layers)), axis=-1) + shift
    return CellResult(
        seeds=np.arange(seeds),
        curve_epochs=np.array([0, 1, 2]),
        train_D=curves,
        train_he_su=np.exp(curves),
        test_D=curves[:, -1] + 0.1,
        test_acc=np.linspace(0.5, 0.6, seeds),
        test_loss=np.ones(seeds),
        train_acc=np.ones(seeds),
        epoch_loss=np.ones((seeds, 2)),
        curvature=curvature(curves[:, -1, :-1]),
        curvature_he_su=curvature(curves[:, -1, :-1]),
    )


def test_final_curves_are_tidy_per_seed_and_layer(tmp_path):
    cell = hand_cell()
    frame = final_curves(cell, 0.3)
    assert len(frame) == 2 * 5 and set(frame["level"]) == {0.3}
    seed1 = frame[frame["seed"] == 1].sort_values("layer")
    np.testing.assert_allclose(seed1["train_D"], cell.train_D[1, -1])
    np.testing.assert_allclose(seed1["test_D"], cell.test_D[1])
    np.testing.assert_allclose(seed1["train_log_he_su"], cell.train_D[1, -1])  # he_su = exp(D) here
    assert set(seed1["test_acc"]) == {cell.test_acc[1]}
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for path, shift in zip(paths, (0.0, 1.0), strict=True):
        write_cell(hand_cell(shift=shift), path, {})
    both = read_final_curves(paths, [("dropout", 0.0, 0.0), ("dropout", 0.3, 0.0)])
    assert list(dict.fromkeys(both["level"])) == [0.0, 0.3] and len(both) == 20
    fig = plot_train_test_load_curves(both, "dropout", 0.0)
    assert len(fig.axes) == 3  # curves, curvature, its accuracy twin
    plt.close(fig)
    nets = {
        "small": vars(train_linear_net(LinearNetSettings(n_samples=8, dim=8, width=8, n_hidden=3, epochs=2)))
    }
    fig = plot_two_metrics(both, nets, "dropout", 0.0)
    assert len(fig.axes) == 4
    plt.close(fig)


# --- the remaining figures -------------------------------------------------------------------------


def test_fig5_regression_and_second_order_figures(config):
    section = copy.deepcopy(config["springblock"])
    nets = {
        name: vars(
            train_linear_net(LinearNetSettings(n_samples=8, dim=8, width=8, n_hidden=3, epochs=2, lr=lr))
        )
        for name, lr in (("small_step", 1e-3), ("large_step", 0.1))
    }
    fig = plot_fig5(nets, leftward_friction_table(section))
    assert len(fig.axes) == 2
    plt.close(fig)
    x = torch.randn(64, 6)
    t = smooth_target(x, 0)
    settings = RegressionSettings(n_hidden=2, width=8, epochs=2, curve_every=1)
    records = {"lazy": vars(train_regression(x, t, x[:16], t[:16], settings))}
    fig = plot_regression_load(records)
    assert len(fig.axes) == 2
    plt.close(fig)
    section["second_order"] = {**section["second_order"], "n_steps": 50}
    second = second_order_phase(section)
    panels = {"first": phase_diagram([0.0, 0.3], [1.0, 2.0], n_chains=2, n_steps=50)}
    panels |= {noise_on: table for noise_on, table in second.groupby("noise_on", sort=False)}
    fig = plot_springblock_orders(panels)
    assert len(fig.axes) == 3 + 1  # three diagrams, one shared colorbar
    plt.close(fig)
