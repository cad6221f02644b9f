"""Fig. 5(b) (friction for leftward moves only) and Fig. S13 (Langevin phase diagram) of paper 2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featdyn.separation import curvature
from featdyn.springblock import elastic_force, load_curve, phase_diagram, simulate
from featdyn.springblock_extra import (
    langevin_phase,
    leftward_friction_equilibrium,
    leftward_friction_mu_eff,
    phase_table,
    simulate_two_point,
)

BLOCKS = np.arange(1, 8)


def forces(x: np.ndarray) -> np.ndarray:
    return elastic_force(np.concatenate([[0.0], x, [1.0]]), 1.0)


def test_eq8_for_mu_r_zero_by_hand() -> None:
    eps = 0.05
    by_hand = (
        BLOCKS / 8 + eps * BLOCKS * (8 - BLOCKS) / 2
    )  # x_l = l y/(L+1) − μ_eff l(L+1−l)/(2k), μ_eff = −ε
    np.testing.assert_allclose(leftward_friction_equilibrium(eps, 0.5), by_hand, rtol=1e-12)
    np.testing.assert_allclose(leftward_friction_equilibrium(0.0, 0.0), BLOCKS / 8, rtol=1e-12)
    assert leftward_friction_mu_eff(0.1, 2.0) == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="move left"):
        leftward_friction_equilibrium(0.1, 0.15)


@pytest.mark.parametrize("eps", [0.0, 0.02, 0.05])
def test_mu_r_zero_chain_reaches_eq8_whatever_mu_l(eps: float) -> None:
    run = simulate_two_point(eps, np.array([0.2, 0.5, 1.0]), 0.0, eta=0.1, n_steps=3000, n_chains=2, seed=1)
    expected = leftward_friction_equilibrium(eps, 0.2)
    np.testing.assert_allclose(run.x, np.broadcast_to(expected, run.x.shape), atol=1e-6)
    np.testing.assert_allclose(forces(run.x[0, 0]), -eps, atol=1e-6)  # every block rests at F = μ_eff
    bend = curvature(load_curve(run.x[0, 0]))
    if eps == 0:
        assert abs(bend) < 1e-6  # linear: no noise, no block ever feels friction
    else:
        assert bend == pytest.approx(eps, abs=1e-6)  # convex: Δ²(y − x) = −μ_eff / k = ε


def test_truncated_noise_approaches_the_same_equilibrium_slowly() -> None:
    eps, truncation = 0.05, 2.0
    expected = leftward_friction_equilibrium(eps, 0.5, noise_bound=truncation)
    errors = [
        np.abs(simulate(eps, 0.5, 0.0, n_steps=n, n_chains=4, seed=0).x - expected).max()
        for n in (2000, 20_000)
    ]
    assert errors[1] < 0.5 * errors[0]
    assert errors[1] > 1e-3  # not there yet: only the rare draws near ±bε still move a block
    final = simulate(eps, 0.5, 0.0, n_steps=20_000, n_chains=4, seed=0).x.mean(0)
    assert 0 < curvature(load_curve(final)) < eps * truncation


def test_phase_table_reproduces_the_first_order_phase_diagram() -> None:
    eps, asym = [0.0, 0.3], [0.5, 2.0, 3.0]
    first = phase_diagram(eps, asym, n_chains=3, n_steps=800, seed=4)
    run = simulate(
        np.array(eps)[:, None], np.array(asym)[None, :] * 0.1, 0.1, n_chains=3, n_steps=800, seed=4
    )
    rebuilt = phase_table(run.x, np.array(eps)[:, None], np.array(asym)[None, :], 0.1, 1.0)
    pd.testing.assert_frame_equal(rebuilt, first)


def test_langevin_phase_table_and_noiseless_sign() -> None:
    eps, asym = [0.0, 0.5], [0.5, 1.0, 3.0]
    table = langevin_phase(eps, asym, n_chains=3, n_steps=4000, seed=0)
    first = phase_diagram(eps, asym, n_chains=3, n_steps=4000, seed=0)
    assert list(table.columns) == list(first.columns)
    assert len(table) == len(eps) * len(asym)
    np.testing.assert_array_equal(table[["eps", "asymmetry", "mu_l"]], first[["eps", "asymmetry", "mu_l"]])
    quiet = table["eps"] == 0
    assert np.all(np.sign(table.loc[quiet, "curvature"]) == np.sign(first.loc[quiet, "curvature"]))
    assert np.all(table.loc[quiet, "curvature"] < 0)  # noiseless: concave in both orders
    assert np.all(table.loc[quiet, "curvature_sd"] == 0)
    loud = table[~quiet].set_index("asymmetry")["curvature"]
    assert loud[3.0] > 0 > loud[0.5]  # with noise the asymmetry decides, as in the first-order chain
