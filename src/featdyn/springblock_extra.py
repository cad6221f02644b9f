"""Spring–block chain, paper 2's Fig. 5(b) and Fig. S13 (SPEC §10).

Fig. 5(b): friction for leftward moves only (μ_r = 0). Noise of bound b·ε (b = `truncation` for the
truncated Gaussian, 1 for two-point noise ±ε) can only stop a block whose force F satisfies
−μ_l ≤ F ± b ε ≤ 0 for every draw, i.e. −μ_l + b ε ≤ F ≤ −b ε. Pulled from rest, every force falls
from above towards −b ε and, when μ_l ≥ 2 b ε, no block ever moves left: the chain settles where every
block feels k Δ²x = μ_eff with

    μ_eff = μ_r − b ε = −b ε,

which is Eq. 7 with μ replaced by μ_eff (paper Eq. 8), independent of μ_l. The load curve y − x_l has
second difference −μ_eff / k = b ε / k: linear for ε = 0, convex for ε > 0.

With two-point noise every step pushes a block by η (F + ε) with probability ½, so the chain reaches this
equilibrium exponentially fast; truncated Gaussian noise reaches it only as its tail near ±b ε is drawn
(about 1/t), which `springblock.simulate` shows. `simulate_two_point` is the first-order chain of
`springblock.simulate` with two-point noise, which that simulator does not offer.

Fig. S13: `langevin_phase` is `springblock.phase_diagram` for the second-order Langevin chain
(`springblock.simulate_langevin`, SM S6.3), with the same table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from featdyn.separation import curvature
from featdyn.springblock import (
    ChainRun,
    elastic_force,
    elongations,
    friction_filter,
    load_curve,
    noiseless_equilibrium,
    simulate_langevin,
)

# --- Fig. 5(b): friction for leftward moves only -----------------------------------------------


def leftward_friction_mu_eff(eps: float, noise_bound: float) -> float:
    """μ_eff = −b ε of the μ_r = 0 chain at rest, b the bound of the standard noise ξ (|ξ| ≤ b)."""
    return -float(noise_bound) * float(eps)


def leftward_friction_equilibrium(
    eps: float,
    mu_l: float,
    *,
    noise_bound: float = 1.0,
    n_blocks: int = 7,
    k: float = 1.0,
    y: float = 1.0,
) -> np.ndarray:
    """Paper Eq. 8 for μ_r = 0: Eq. 7 with μ = μ_eff = −b ε, x_l = l y/(L+1) + b ε l (L+1−l) / (2k).

    Valid when no block can move left at rest, μ_l ≥ 2 b ε; then it does not depend on μ_l.
    """
    if mu_l < 2 * noise_bound * eps:
        raise ValueError(
            f"μ_l = {mu_l} < 2 b ε = {2 * noise_bound * eps}: blocks also move left, so Eq. 8 is not exact"
        )
    return noiseless_equilibrium(n_blocks, k, leftward_friction_mu_eff(eps, noise_bound), y)


def simulate_two_point(
    eps: ArrayLike = 0.1,
    mu_l: ArrayLike = 0.1,
    mu_r: ArrayLike = 0.0,
    *,
    n_blocks: int = 7,
    k: float = 1.0,
    eta: float = 0.01,
    y: float = 1.0,
    n_steps: int = 10_000,
    n_chains: int = 1,
    seed: int = 0,
) -> ChainRun:
    """`springblock.simulate` with two-point noise ξ = ±1 (probability ½ each, per block and step).

    F_l = k Δ²x_l + ε ξ_l, x_l += η · friction_filter(F_l, μ_l, μ_r); parameters broadcast into cells as
    there, final state (*cells, n_chains, L); `trajectory` holds the start and the end only.
    """
    cell_arrays = np.broadcast_arrays(*(np.asarray(p, dtype=np.float64) for p in (eps, mu_l, mu_r)))
    cells = cell_arrays[0].shape
    eps, mu_l, mu_r = (a[..., None, None] for a in cell_arrays)
    padded = np.zeros((*cells, n_chains, n_blocks + 2))
    padded[..., -1] = y
    rng = np.random.default_rng(seed)
    start = padded[..., 1:-1].copy()
    for _ in range(n_steps):
        xi = 2.0 * rng.integers(0, 2, size=(*cells, n_chains, n_blocks)) - 1.0
        force = elastic_force(padded, k) + eps * xi
        padded[..., 1:-1] += eta * friction_filter(force, mu_l, mu_r)
    x = padded[..., 1:-1].copy()
    return ChainRun(x=x, steps=np.array([0, n_steps]), trajectory=np.stack([start, x]))


# --- Fig. S13: phase diagram of the second-order Langevin chain --------------------------------


def phase_table(x: np.ndarray, eps: np.ndarray, asymmetry: np.ndarray, mu_r: float, y: float) -> pd.DataFrame:
    """The table of `springblock.phase_diagram` from final positions x (n_eps, n_asym, n_chains, L)."""
    n_blocks = x.shape[-1]
    per_chain = curvature(load_curve(x, y))
    mean_x = x.mean(axis=-2)
    eps, asymmetry = np.broadcast_arrays(eps, asymmetry)
    frame = pd.DataFrame(
        {
            "eps": eps.ravel(),
            "asymmetry": asymmetry.ravel(),
            "mu_l": asymmetry.ravel() * mu_r,
            "mu_r": mu_r,
            "curvature": curvature(load_curve(mean_x, y)).ravel(),
            "curvature_sd": per_chain.std(axis=-1).ravel(),
            "y": y,
        }
    )
    lengths = elongations(mean_x).reshape(-1, n_blocks)
    for block in range(n_blocks):
        frame[f"elongation_{block + 1}"] = lengths[:, block]
    return frame


def langevin_phase(
    noise_levels: Sequence[float],
    friction_asymmetries: Sequence[float],
    *,
    mu_r: float = 0.1,
    n_blocks: int = 7,
    n_chains: int = 16,
    n_steps: int = 20_000,
    seed: int = 0,
    **langevin_options: object,
) -> pd.DataFrame:
    """Curvature of the final load curve over ε × μ_l / μ_r for the Langevin chain (paper Fig. S13).

    Same rows and columns as `springblock.phase_diagram`: eps, asymmetry, mu_l, mu_r, curvature (of the
    chain-mean load curve), curvature_sd (across chains), y, elongation_1 … elongation_L.
    """
    eps = np.asarray(noise_levels, dtype=np.float64)[:, None]
    asymmetry = np.asarray(friction_asymmetries, dtype=np.float64)[None, :]
    run = simulate_langevin(
        eps,
        asymmetry * mu_r,
        mu_r,
        n_blocks=n_blocks,
        n_chains=n_chains,
        n_steps=n_steps,
        seed=seed,
        **langevin_options,
    )
    return phase_table(run.x, eps, asymmetry, mu_r, float(langevin_options.get("y", 1.0)))
