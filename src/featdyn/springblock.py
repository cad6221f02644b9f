"""Spring–block chain with asymmetric friction (docs/definitions.md §10; paper 2, Eq. 4-8 and SM S6).

Blocks l = 1 … L sit at x_l on a line, x_0 = 0 is the wall and x_{L+1} = y the target pulling the last
spring. The elastic force on block l is k (x_{l+1} − 2 x_l + x_{l−1}); spring l's elongation x_l − x_{l−1}
plays layer l's share of data separation and the distance y − x_l plays D_l.

All simulators are vectorised: `eps`, `mu_l` and `mu_r` are broadcast against each other into a grid of
parameter cells, each cell holds `n_chains` independent chains, and a step updates every block of every
chain of every cell at once (state shape `(*cells, n_chains, L)`); only time is a Python loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, save_arrays
from featdyn.separation import curvature

NoiseKind = Literal["truncated", "gaussian"]


@dataclass(frozen=True)
class ChainRun:
    """Final positions `x` (*cells, n_chains, L); `trajectory` (n_records, *cells, n_chains, L) at `steps`."""

    x: np.ndarray
    steps: np.ndarray
    trajectory: np.ndarray


def sample_noise(
    rng: np.random.Generator, shape: tuple[int, ...], kind: NoiseKind = "truncated", truncation: float = 2.0
) -> np.ndarray:
    """Standard Gaussian noise, redrawn where |ξ| > truncation for the truncated kind."""
    xi = rng.standard_normal(shape)
    if kind == "gaussian":
        return xi
    outside = np.abs(xi) > truncation
    while outside.any():
        xi[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(xi) > truncation
    return xi


def friction_filter(force: np.ndarray, mu_l: ArrayLike, mu_r: ArrayLike) -> np.ndarray:
    """What friction lets through: F − μ_r if F > μ_r, F + μ_l if F < −μ_l, 0 in between (block stays)."""
    return np.where(force > mu_r, force - mu_r, np.where(force < -np.asarray(mu_l), force + mu_l, 0.0))


def elastic_force(padded: np.ndarray, k: float) -> np.ndarray:
    """k (x_{l+1} − 2 x_l + x_{l−1}) for the blocks of a chain padded with the wall and the target."""
    return k * (padded[..., 2:] - 2.0 * padded[..., 1:-1] + padded[..., :-2])


def _cell_parameters(*params: ArrayLike) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Broadcast the cell parameters and shape them to act on (*cells, n_chains, blocks) arrays."""
    arrays = np.broadcast_arrays(*(np.asarray(p, dtype=np.float64) for p in params))
    return arrays[0].shape, [a[..., None, None] for a in arrays]


def _padded_chain(cells: tuple[int, ...], n_chains: int, n_blocks: int, y: float) -> np.ndarray:
    """Positions with x_0 = 0 and x_{L+1} = y around L blocks at rest at 0 (DNNs start unseparated)."""
    padded = np.zeros((*cells, n_chains, n_blocks + 2))
    padded[..., -1] = y
    return padded


def _evolve(
    padded: np.ndarray, advance: Callable[[int], None], n_steps: int, record_every: int | None
) -> ChainRun:
    """Call `advance(step)` n_steps times, recording the block positions at step 0 and every record_every."""
    every = record_every or n_steps
    records, steps = [padded[..., 1:-1].copy()], [0]
    for step in range(n_steps):
        advance(step)
        if (step + 1) % every == 0:
            records.append(padded[..., 1:-1].copy())
            steps.append(step + 1)
    return ChainRun(x=padded[..., 1:-1].copy(), steps=np.array(steps), trajectory=np.stack(records))


def simulate(
    eps: ArrayLike = 0.1,
    mu_l: ArrayLike = 0.1,
    mu_r: ArrayLike = 0.1,
    *,
    n_blocks: int = 7,
    k: float = 1.0,
    eta: float = 0.01,
    y: float = 1.0,
    n_steps: int = 10_000,
    n_chains: int = 1,
    noise: NoiseKind = "truncated",
    truncation: float = 2.0,
    shared_noise: bool = False,
    record_every: int | None = None,
    seed: int = 0,
) -> ChainRun:
    """Overdamped chain (paper Eq. 5): F_l = elastic + ε ξ_l, x_l += η · friction_filter(F_l).

    ξ is drawn per block, or once per chain and step for all blocks when `shared_noise`.
    """
    cells, (eps, mu_l, mu_r) = _cell_parameters(eps, mu_l, mu_r)
    padded = _padded_chain(cells, n_chains, n_blocks, y)
    noise_shape = (*cells, n_chains, 1 if shared_noise else n_blocks)
    rng = np.random.default_rng(seed)

    def advance(step: int) -> None:
        force = elastic_force(padded, k) + eps * sample_noise(rng, noise_shape, noise, truncation)
        padded[..., 1:-1] += eta * friction_filter(force, mu_l, mu_r)

    return _evolve(padded, advance, n_steps, record_every)


def langevin_friction(
    velocity: np.ndarray, force: np.ndarray, mu_l: ArrayLike, mu_r: ArrayLike
) -> np.ndarray:
    """Friction of the second-order chain (SM Eq. 11): sliding ±μ against motion, static up to μ at rest."""
    static = np.clip(force, -np.asarray(mu_l), mu_r)
    return np.where(velocity > 0, mu_r, np.where(velocity < 0, -np.asarray(mu_l), static))


def simulate_langevin(
    eps: ArrayLike = 0.1,
    mu_l: ArrayLike = 0.1,
    mu_r: ArrayLike = 0.1,
    *,
    n_blocks: int = 7,
    k: float = 1.0,
    gamma: float = 4.0,
    dt: float = 0.05,
    noise_decay: float = 0.005,
    y: float = 1.0,
    n_steps: int = 20_000,
    n_chains: int = 1,
    noise: NoiseKind = "gaussian",
    truncation: float = 2.0,
    shared_noise: bool = False,
    record_every: int | None = None,
    seed: int = 0,
) -> ChainRun:
    """Second-order Langevin chain (SM S6.3): unit masses, damping γ, friction, noise on the velocity.

    dv = (elastic − γ v − friction) dt + ε e^{−λt} dW, dx = v dt (semi-implicit Euler–Maruyama). Friction
    is computed before the noise is added and may stop a block but never reverse it within a step.
    """
    cells, (eps, mu_l, mu_r) = _cell_parameters(eps, mu_l, mu_r)
    padded = _padded_chain(cells, n_chains, n_blocks, y)
    velocity = np.zeros_like(padded[..., 1:-1])
    noise_shape = (*cells, n_chains, 1 if shared_noise else n_blocks)
    rng = np.random.default_rng(seed)

    def advance(step: int) -> None:
        force = elastic_force(padded, k)
        accelerated = velocity + dt * (
            force - gamma * velocity - langevin_friction(velocity, force, mu_l, mu_r)
        )
        stopped = (velocity != 0) & (np.sign(accelerated) != np.sign(velocity))
        sigma = eps * np.exp(-noise_decay * step * dt) * np.sqrt(dt)
        velocity[...] = np.where(stopped, 0.0, accelerated) + sigma * sample_noise(
            rng, noise_shape, noise, truncation
        )
        padded[..., 1:-1] += dt * velocity

    return _evolve(padded, advance, n_steps, record_every)


def spring_load_curve(x: ArrayLike, y: float = 1.0) -> np.ndarray:
    """Distance to the target y − x_l for l = 0 (the wall, x_0 = 0) … L, along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    return y - np.concatenate([np.zeros_like(x[..., :1]), x], axis=-1)


def elongations(x: ArrayLike) -> np.ndarray:
    """Spring elongations x_l − x_{l−1}, l = 1 … L, along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    return np.diff(x, axis=-1, prepend=0.0)


def noiseless_equilibrium(n_blocks: int = 7, k: float = 1.0, mu: float = 0.1, y: float = 1.0) -> np.ndarray:
    """Rest positions reached from x = 0 without noise (paper Eq. 7), where every moved block feels k Δ²x = μ.

    Only the deepest n blocks move, n the largest n ≤ L with n(n+1) μ ≤ 2 k y; the shallower ones stay at 0.
    Within the moving part, spring i (1 … n+1) has length y/(n+1) + (μ/k)(i − 1 − n/2), so deeper springs
    are longer: x_{L−n+j} = j y/(n+1) − μ j (n+1−j) / (2k). With μ replaced by an effective (possibly
    negative) friction this is the noisy prediction, Eq. 8.
    """
    candidates = np.arange(n_blocks + 1)
    n = int(candidates[candidates * (candidates + 1) * mu <= 2 * k * y].max())
    j = np.arange(1, n + 1)
    moving = j * y / (n + 1) - mu * j * (n + 1 - j) / (2 * k)
    return np.concatenate([np.zeros(n_blocks - n), moving])


def effective_friction(
    force: ArrayLike,
    eps: ArrayLike,
    mu_l: ArrayLike = 0.1,
    mu_r: ArrayLike = 0.1,
    *,
    window: int = 10_000,
    noise: NoiseKind = "truncated",
    truncation: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """Friction felt on average by a block under a constant force over a time window of `window` steps.

    μ_eff = f − Δx / (η T): the force minus the mean velocity that friction lets through, so a free
    block has μ_eff = 0 and a noiseless sliding one μ_eff = μ_r. Broadcast over all four parameters.
    """
    force, eps, mu_l, mu_r = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (force, eps, mu_l, mu_r))
    )
    xi = sample_noise(np.random.default_rng(seed), (*force.shape, window), noise, truncation)
    moved = friction_filter(force[..., None] + eps[..., None] * xi, mu_l[..., None], mu_r[..., None])
    return force - moved.mean(axis=-1)


def phase_diagram(
    noise_levels: Sequence[float],
    friction_asymmetries: Sequence[float],
    *,
    mu_r: float = 0.1,
    n_blocks: int = 7,
    n_chains: int = 16,
    n_steps: int = 10_000,
    y: float = 1.0,
    seed: int = 0,
    **simulate_options: object,
) -> pd.DataFrame:
    """Curvature of the final load curve over noise ε × friction asymmetry μ_l / μ_r (paper Fig. 3).

    One row per cell, averaged over `n_chains` chains: eps, asymmetry, mu_l, mu_r, curvature (of the mean
    load curve), curvature_sd (across chains), y and the mean elongations elongation_1 … elongation_L.
    """
    eps = np.asarray(noise_levels, dtype=np.float64)[:, None]
    asymmetry = np.asarray(friction_asymmetries, dtype=np.float64)[None, :]
    run = simulate(
        eps,
        asymmetry * mu_r,
        mu_r,
        n_blocks=n_blocks,
        n_chains=n_chains,
        n_steps=n_steps,
        y=y,
        seed=seed,
        **simulate_options,
    )
    per_chain = curvature(spring_load_curve(run.x, y))
    mean_x = run.x.mean(axis=-2)
    eps, asymmetry = np.broadcast_arrays(eps, asymmetry)
    frame = pd.DataFrame(
        {
            "eps": eps.ravel(),
            "asymmetry": asymmetry.ravel(),
            "mu_l": asymmetry.ravel() * mu_r,
            "mu_r": mu_r,
            "curvature": curvature(spring_load_curve(mean_x, y)).ravel(),
            "curvature_sd": per_chain.std(axis=-1).ravel(),
            "y": y,
        }
    )
    lengths = elongations(mean_x).reshape(-1, n_blocks)
    for block in range(n_blocks):
        frame[f"elongation_{block + 1}"] = lengths[:, block]
    return frame


SIMULATION_KEYS = ("n_blocks", "k", "eta", "y", "n_steps", "noise", "truncation")
"""Keys of config section `springblock` that are options of `simulate`."""


def simulation_options(section: Mapping[str, Any]) -> dict[str, Any]:
    """The `simulate` options of config section `springblock`."""
    return {key: section[key] for key in SIMULATION_KEYS}


def load_dynamics(
    eps: float,
    asymmetry: float,
    *,
    mu_r: float = 0.1,
    record_every: int = 100,
    shared_noise: bool = True,
    y: float = 1.0,
    seed: int = 0,
    **simulate_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps (n_records,) and load curves y − x_l (n_records, L + 1) of one chain as it is pulled (Fig. 4).

    The noise is shared by all blocks by default, as in paper 2's Fig. 4 (a DNN's layers share their noise).
    """
    run = simulate(
        eps,
        asymmetry * mu_r,
        mu_r,
        n_chains=1,
        shared_noise=shared_noise,
        record_every=record_every,
        y=y,
        seed=seed,
        **simulate_options,
    )
    return run.steps, spring_load_curve(run.trajectory[:, 0], y)


def dynamics_cases(section: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(steps, load curves) of every case of config section `springblock.dynamics` (Fig. 4, right)."""
    dynamics = section["dynamics"]
    return [
        load_dynamics(
            float(case["eps"]),
            float(case["asymmetry"]),
            mu_r=float(section["mu_r"]),
            record_every=int(dynamics["record_every"]),
            seed=int(section["seed"]),
            **simulation_options(section),
        )
        for case in dynamics["cases"]
    ]


def write_dynamics(
    cases: Sequence[tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, provenance: Mapping[str, Any]
) -> None:
    """One group per case, in order (`0`, `1`, …), with `steps` and `curves` (n_records, L + 1)."""
    with atomic_h5(path, provenance) as f:
        for i, (steps, curves) in enumerate(cases):
            save_arrays(f.create_group(str(i)), {"steps": steps, "curves": curves})


def read_dynamics(path: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    with open_h5(path) as f:
        return [(f[str(i)]["steps"][()], f[str(i)]["curves"][()]) for i in range(len(f))]
