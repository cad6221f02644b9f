"""Spring–block chain: analytic equilibrium, effect of noise and friction asymmetry, variants and figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from featdyn.config import fill_defaults, schema
from featdyn.curvature import curvature
from featdyn.plots.springblock import LoadDynamicsCase, plot_load_dynamics, plot_springblock_phase
from featdyn.springblock import (
    ChainRun,
    dynamics_cases,
    effective_friction,
    elastic_force,
    elongations,
    leftward_friction_equilibrium,
    leftward_friction_mu_eff,
    load_dynamics,
    noise_bound,
    noiseless_equilibrium,
    phase_diagram,
    phase_table,
    read_dynamics,
    sample_noise,
    simulate,
    simulate_langevin,
    spring_load_curve,
    write_dynamics,
)


def block_forces(x: np.ndarray, k: float = 1.0, y: float = 1.0) -> np.ndarray:
    return elastic_force(np.concatenate([[0.0], x, [y]]), k)


@pytest.mark.parametrize(("mu", "eta", "n_steps"), [(0.01, 0.1, 4000), (0.1, 0.01, 10_000)])
def test_noiseless_chain_reaches_the_analytic_unbalanced_equilibrium(
    mu: float, eta: float, n_steps: int
) -> None:
    run = simulate(0.0, mu, mu, eta=eta, n_steps=n_steps)
    expected = noiseless_equilibrium(7, 1.0, mu, 1.0)
    np.testing.assert_allclose(run.x[0], expected, atol=1e-6)
    forces = block_forces(run.x[0])
    moved = expected > 0
    np.testing.assert_allclose(forces[moved], mu, atol=1e-6)  # friction balances the load on moved blocks
    assert np.all(forces[~moved] <= mu + 1e-9)  # the others never felt enough to slide
    assert np.all(np.diff(elongations(run.x[0])) >= -1e-9)  # deeper springs are longer
    assert curvature(spring_load_curve(run.x[0])) < 0  # concave: lazy, deep layers take the load


def test_all_blocks_move_for_small_friction_and_equilibrium_is_eq7() -> None:
    blocks, n = np.arange(1, 8), 7
    np.testing.assert_allclose(
        noiseless_equilibrium(7, 2.0, 0.01, 1.0), blocks / (n + 1) - 0.01 * blocks * (n + 1 - blocks) / 4.0
    )
    np.testing.assert_allclose(noiseless_equilibrium(7, 1.0, 0.0, 1.0), blocks / 8)
    assert curvature(spring_load_curve(noiseless_equilibrium(7, 1.0, -0.05, 1.0))) == pytest.approx(0.05)


def test_noise_lowers_effective_friction() -> None:
    levels = np.array([0.0, 0.05, 0.1, 0.2, 0.5])
    friction = effective_friction(0.15, levels, 0.1, 0.1, window=4000)
    assert friction[0] == pytest.approx(0.1)
    assert np.all(np.diff(friction) < 0)
    asymmetric = effective_friction(0.15, 1.0, 0.3, 0.1, window=4000)
    assert asymmetric < 0  # with μ_l > μ_r strong noise makes friction push the load back


def test_noise_relaxes_the_chain_below_the_static_friction() -> None:
    quiet, noisy = (simulate(eps, 0.1, 0.1, n_steps=5000, n_chains=8, seed=1).x for eps in (0.0, 0.2))
    mean_force = [np.mean(block_forces(x.mean(0))[-3:]) for x in (quiet, noisy)]  # deepest blocks all slid
    assert mean_force[1] < 0.5 * mean_force[0]


def test_asymmetric_friction_with_enough_noise_turns_the_load_curve_convex() -> None:
    run = simulate([0.0, 0.4], 0.3, 0.1, n_steps=6000, n_chains=8, seed=2)
    bends = curvature(spring_load_curve(run.x)).mean(-1)
    assert bends[0] < 0 < bends[1]


@pytest.mark.parametrize("shared", [False, True])
def test_independent_and_shared_noise_run_on_a_parameter_grid(shared: bool) -> None:
    eps = np.array([0.0, 0.1, 0.3])[:, None]
    mu_l = np.array([0.05, 0.1, 0.2, 0.3])[None, :]
    run = simulate(eps, mu_l, 0.1, n_steps=500, n_chains=5, shared_noise=shared, record_every=100, seed=3)
    assert run.x.shape == (3, 4, 5, 7)
    assert run.trajectory.shape == (6, 3, 4, 5, 7)
    np.testing.assert_array_equal(run.steps, [0, 100, 200, 300, 400, 500])
    np.testing.assert_array_equal(run.trajectory[-1], run.x)
    assert np.all(np.isfinite(run.x))
    free = simulate(0.5, 0.0, 0.0, k=0.0, n_steps=50, n_chains=2, shared_noise=shared, seed=3).x
    assert np.allclose(free, free[:, :1]) == shared  # without springs, shared noise moves blocks in lockstep


def test_simulation_is_deterministic_for_a_seed() -> None:
    first, again, other = (
        simulate(0.3, 0.2, 0.1, n_steps=300, n_chains=3, seed=seed).x for seed in (7, 7, 8)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_langevin_variant_runs_and_noiseless_is_concave() -> None:
    quiet = simulate_langevin(0.0, 0.1, 0.1, n_steps=8000)
    np.testing.assert_allclose(quiet.x[0], noiseless_equilibrium(7, 1.0, 0.1, 1.0), atol=1e-6)
    assert curvature(spring_load_curve(quiet.x[0])) < 0
    noisy = simulate_langevin([0.0, 0.3], 0.3, 0.1, n_steps=4000, n_chains=4, shared_noise=True, seed=4)
    assert noisy.x.shape == (2, 4, 7) and np.all(np.isfinite(noisy.x))


def test_phase_diagram_is_tidy_and_shows_the_transition() -> None:
    frame = phase_diagram([0.0, 0.4], [0.5, 1.0, 3.0], n_chains=6, n_steps=4000, seed=5)
    assert len(frame) == 6
    assert {"eps", "asymmetry", "mu_l", "mu_r", "curvature", "curvature_sd", "elongation_7"} <= set(
        frame.columns
    )
    cell = frame.set_index(["eps", "asymmetry"])["curvature"]
    assert cell[0.0, 3.0] < 0 and cell[0.4, 3.0] > 0
    assert abs(cell[0.4, 1.0]) < 0.01


def test_springblock_figures() -> None:
    frame = phase_diagram([0.0, 0.2], [1.0, 2.0], n_chains=2, n_steps=300)
    fig = plot_springblock_phase(frame)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 3  # phase, colorbar, load curves
    plt.close(fig)
    steps, spring = load_dynamics(0.1, 2.0, n_steps=400, record_every=100)
    dnn = np.linspace(2, 0, 5)[:, None] - np.arange(8) / 10
    cases = [
        LoadDynamicsCase("lazy", spring, steps, dnn, np.arange(0, 50, 10)),
        LoadDynamicsCase("noisy", spring, steps, dnn, np.arange(0, 50, 10), spring_title="ε = 0.1"),
    ]
    fig = plot_load_dynamics(cases)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 2 * 4  # per row: two panels, two time colorbars
    plt.close(fig)
    fig = plot_load_dynamics([LoadDynamicsCase("spring only", spring, steps)])
    assert len(fig.axes) == 2
    plt.close(fig)


def test_load_dynamics_start_unseparated_and_end_like_the_chain(tmp_path) -> None:
    steps, curves = load_dynamics(0.0, 2.0, mu_r=0.1, n_steps=10_000, record_every=2500, y=1.0)
    np.testing.assert_array_equal(steps, [0, 2500, 5000, 7500, 10_000])
    np.testing.assert_array_equal(curves[0], np.ones(8))  # every block at the wall: nothing separated yet
    np.testing.assert_allclose(
        curves[-1], spring_load_curve(noiseless_equilibrium(7, 1.0, 0.1, 1.0)), atol=1e-6
    )
    shared = simulate(0.3, 0.2, 0.1, n_steps=300, shared_noise=True, record_every=100, seed=4)
    np.testing.assert_array_equal(
        load_dynamics(0.3, 2.0, mu_r=0.1, n_steps=300, record_every=100, seed=4)[1],
        spring_load_curve(shared.trajectory[:, 0]),
    )
    section = {
        "n_blocks": 5,
        "n_steps": 200,
        "mu_r": 0.1,
        "seed": 1,
        "dynamics": {
            "record_every": 50,
            "cases": [{"eps": 0.0, "asymmetry": 1.0}, {"eps": 0.3, "asymmetry": 3.0}],
        },
    }
    fill_defaults(section, schema()["properties"]["springblock"])
    cases = dynamics_cases(section)
    assert [c.shape for _, c in cases] == [(5, 6), (5, 6)]
    write_dynamics(cases, tmp_path / "dynamics.h5", section)
    for (steps, curves), (steps_back, curves_back) in zip(cases, read_dynamics(tmp_path / "dynamics.h5")):
        np.testing.assert_array_equal(steps_back, steps)
        np.testing.assert_array_equal(curves_back, curves)


# --- paper 2, Fig. 5(b): friction for leftward moves only (μ_r = 0) ------------------------------

BLOCKS = np.arange(1, 8)


def test_two_point_noise_and_noise_bounds() -> None:
    xi = sample_noise(np.random.default_rng(0), (4000,), "two_point")
    assert set(np.unique(xi)) == {-1.0, 1.0} and abs(xi.mean()) < 0.05
    assert noise_bound("two_point") == 1.0 and noise_bound("truncated", 2.5) == 2.5
    assert noise_bound("gaussian") == np.inf
    assert np.abs(sample_noise(np.random.default_rng(0), (4000,), "truncated", 1.5)).max() <= 1.5


def test_eq8_for_mu_r_zero_by_hand() -> None:
    eps = 0.05
    # x_l = l y/(L+1) − μ_eff l(L+1−l)/(2k) with μ_eff = −ε
    by_hand = BLOCKS / 8 + eps * BLOCKS * (8 - BLOCKS) / 2
    np.testing.assert_allclose(leftward_friction_equilibrium(eps, 0.5), by_hand, rtol=1e-12)
    np.testing.assert_allclose(leftward_friction_equilibrium(0.0, 0.0), BLOCKS / 8, rtol=1e-12)
    assert leftward_friction_mu_eff(0.1, 2.0) == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="move left"):
        leftward_friction_equilibrium(0.1, 0.15)


def block_forces_at_rest(x: np.ndarray) -> np.ndarray:
    return elastic_force(np.concatenate([[0.0], x, [1.0]]), 1.0)


@pytest.mark.parametrize("eps", [0.0, 0.02, 0.05])
def test_mu_r_zero_chain_reaches_eq8_whatever_mu_l(eps: float) -> None:
    mu_l = np.array([0.2, 0.5, 1.0])
    run = simulate(eps, mu_l, 0.0, eta=0.1, n_steps=3000, n_chains=2, noise="two_point", seed=1)
    expected = leftward_friction_equilibrium(eps, 0.2)
    np.testing.assert_allclose(run.x, np.broadcast_to(expected, run.x.shape), atol=1e-6)
    np.testing.assert_allclose(block_forces_at_rest(run.x[0, 0]), -eps, atol=1e-6)  # F = μ_eff at rest
    bend = curvature(spring_load_curve(run.x[0, 0]))
    if eps == 0:
        assert abs(bend) < 1e-6  # linear: no noise, no block ever feels friction
    else:
        assert bend == pytest.approx(eps, abs=1e-6)  # convex: Δ²(y − x) = −μ_eff / k = ε


def test_truncated_noise_approaches_the_same_equilibrium_slowly() -> None:
    eps, truncation = 0.05, 2.0
    expected = leftward_friction_equilibrium(eps, 0.5, bound=truncation)
    errors = [
        np.abs(simulate(eps, 0.5, 0.0, n_steps=n, n_chains=4, seed=0).x - expected).max()
        for n in (2000, 20_000)
    ]
    assert errors[1] < 0.5 * errors[0]
    assert errors[1] > 1e-3  # not there yet: only the rare draws near ±bε still move a block
    final = simulate(eps, 0.5, 0.0, n_steps=20_000, n_chains=4, seed=0).x.mean(0)
    assert 0 < curvature(spring_load_curve(final)) < eps * truncation


# --- Figs. S13/S14: the second-order chain's phase diagram ---------------------------------------


def test_phase_table_is_the_phase_diagram_of_the_simulated_positions() -> None:
    eps, asym = [0.0, 0.3], [0.5, 2.0, 3.0]
    first = phase_diagram(eps, asym, n_chains=3, n_steps=800, seed=4)
    run = simulate(
        np.array(eps)[:, None], np.array(asym)[None, :] * 0.1, 0.1, n_chains=3, n_steps=800, seed=4
    )
    rebuilt = phase_table(run.x, np.array(eps)[:, None], np.array(asym)[None, :], 0.1, 1.0)
    pd.testing.assert_frame_equal(rebuilt, first)
    cell = rebuilt.iloc[4]  # ε = 0.3, asymmetry 2: its columns by hand from the final positions
    mean_x = run.x[1, 1].mean(0)
    assert cell["curvature"] == pytest.approx(curvature(spring_load_curve(mean_x)))
    assert cell["curvature_sd"] == pytest.approx(curvature(spring_load_curve(run.x[1, 1])).std())
    np.testing.assert_allclose(
        cell[[f"elongation_{b}" for b in BLOCKS]].to_numpy(float), np.diff(mean_x, prepend=0)
    )


@pytest.mark.parametrize("noise_on", ["velocity", "force"])
def test_second_order_phase_diagram_has_the_first_order_signs(noise_on: str) -> None:
    eps, asym = [0.0, 0.5], [0.5, 1.0, 3.0]
    table = phase_diagram(
        eps, asym, n_chains=3, n_steps=4000, seed=0, simulator=simulate_langevin, noise_on=noise_on
    )
    first = phase_diagram(eps, asym, n_chains=3, n_steps=4000, seed=0)
    assert list(table.columns) == list(first.columns)
    np.testing.assert_array_equal(table[["eps", "asymmetry", "mu_l"]], first[["eps", "asymmetry", "mu_l"]])
    quiet = table["eps"] == 0
    np.testing.assert_allclose(table.loc[quiet, "curvature"], first.loc[quiet, "curvature"], atol=1e-6)
    assert np.all(table.loc[quiet, "curvature"] < 0)  # noiseless: the concave Eq. 7 in both orders
    assert np.all(table.loc[quiet, "curvature_sd"] == 0)
    loud = table[~quiet].set_index("asymmetry")["curvature"]
    assert loud[3.0] > 0.02 > -0.02 > loud[0.5]  # with noise the asymmetry decides, as in the first order


def test_noise_placement_matters_and_is_checked() -> None:
    runs = [
        simulate_langevin(0.3, 0.3, 0.1, n_steps=500, noise_on=on, seed=2) for on in ("force", "velocity")
    ]
    assert isinstance(runs[0], ChainRun) and not np.allclose(runs[0].x, runs[1].x)
    with pytest.raises(ValueError, match="noise placement"):
        simulate_langevin(0.3, 0.3, 0.1, n_steps=5, noise_on="position")
