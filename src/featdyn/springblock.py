"""Spring–block chain with asymmetric friction (docs/definitions.md §10; paper 2, Eq. 4-8 and SM S6).

Blocks l = 1 … L sit at x_l on a line, x_0 = 0 is the wall and x_{L+1} = y the target pulling the last
spring. The elastic force on block l is k (x_{l+1} − 2 x_l + x_{l−1}); spring l's elongation x_l − x_{l−1}
plays layer l's share of data separation and the distance y − x_l plays D_l.

All simulators are vectorised: `eps`, `mu_l` and `mu_r` are broadcast against each other into a grid of
parameter cells, each cell holds `n_chains` independent chains, and a step updates every block of every
chain of every cell at once (state shape `(*cells, n_chains, L)`); only time is a Python loop.

Figures: the first-order phase diagram (Fig. 3) and load dynamics (Fig. 4), the chain with friction for
leftward moves only beside Eq. 8 (Fig. 5b; two-point noise reaches it exactly), and the second-order
chain's phase diagrams with the noise in the force (Eq. 4, Fig. S13) or on the velocity (Eq. 12, Fig. S14).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from featdyn.curvature import curvature
from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, save_arrays

NoiseKind = Literal["truncated", "gaussian", "two_point"]
NoisePlacement = Literal["velocity", "force"]


@dataclass(frozen=True)
class ChainRun:
    """Final positions `x` (*cells, n_chains, L); `trajectory` (n_records, *cells, n_chains, L) at `steps`."""

    x: np.ndarray
    steps: np.ndarray
    trajectory: np.ndarray


def sample_noise(
    rng: np.random.Generator, shape: tuple[int, ...], kind: NoiseKind = "truncated", truncation: float = 2.0
) -> np.ndarray:
    """Standard noise ξ: Gaussian, Gaussian redrawn where |ξ| > truncation (truncated), or ±1 with
    probability ½ each (two_point)."""
    if kind == "two_point":
        return 2.0 * rng.integers(0, 2, size=shape) - 1.0
    xi = rng.standard_normal(shape)
    if kind == "gaussian":
        return xi
    outside = np.abs(xi) > truncation
    while outside.any():
        xi[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(xi) > truncation
    return xi


def noise_bound(kind: NoiseKind, truncation: float = 2.0) -> float:
    """The bound b of the standard noise, |ξ| ≤ b: `truncation`, 1 for two_point, ∞ for gaussian."""
    return {"truncated": float(truncation), "two_point": 1.0, "gaussian": np.inf}[kind]


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
    noise_on: NoisePlacement = "velocity",
    shared_noise: bool = False,
    record_every: int | None = None,
    seed: int = 0,
) -> ChainRun:
    """Second-order chain with unit masses, damping γ and the friction of SM Eq. 11, in two formulations.

    - noise_on="velocity", the Langevin chain (SM S6.3, Eq. 12; paper Fig. S14): dv = (elastic − γ v −
      friction(v, elastic)) dt + ε e^{−λt} dW; friction is computed before the noise is added.
    - noise_on="force", paper Eq. 4 (SM Eq. 10; Fig. S13): the noise ε e^{−λt} ξ is part of the force
      F = elastic + noise that friction acts on, dv = (F − γ v − friction(v, F)) dt.

    dx = v dt (semi-implicit Euler–Maruyama). Friction may stop a block but never reverse it within a step.
    """
    if noise_on not in ("velocity", "force"):
        raise ValueError(f"unknown noise placement {noise_on!r}; available: ['force', 'velocity']")
    cells, (eps, mu_l, mu_r) = _cell_parameters(eps, mu_l, mu_r)
    padded = _padded_chain(cells, n_chains, n_blocks, y)
    velocity = np.zeros_like(padded[..., 1:-1])
    noise_shape = (*cells, n_chains, 1 if shared_noise else n_blocks)
    rng = np.random.default_rng(seed)

    def advance(step: int) -> None:
        force = elastic_force(padded, k)
        amplitude = eps * np.exp(-noise_decay * step * dt)
        if noise_on == "force":
            force = force + amplitude * sample_noise(rng, noise_shape, noise, truncation)
        accelerated = velocity + dt * (
            force - gamma * velocity - langevin_friction(velocity, force, mu_l, mu_r)
        )
        stopped = (velocity != 0) & (np.sign(accelerated) != np.sign(velocity))
        velocity[...] = np.where(stopped, 0.0, accelerated)
        if noise_on == "velocity":
            velocity[...] += amplitude * np.sqrt(dt) * sample_noise(rng, noise_shape, noise, truncation)
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


def leftward_friction_mu_eff(eps: float, bound: float) -> float:
    """μ_eff = −b ε of the chain with friction for leftward moves only (μ_r = 0) at rest, |ξ| ≤ b."""
    return -float(bound) * float(eps)


def leftward_friction_equilibrium(
    eps: float, mu_l: float, *, bound: float = 1.0, n_blocks: int = 7, k: float = 1.0, y: float = 1.0
) -> np.ndarray:
    """Paper Eq. 8 for μ_r = 0 (Fig. 5b): Eq. 7 with μ = μ_eff = −b ε, x_l = l y/(L+1) + b ε l (L+1−l)/(2k).

    Pulled from rest, every force falls from above towards −b ε; when μ_l ≥ 2 b ε no block can ever
    move left, so the chain settles where k Δ²x = μ_eff, independent of μ_l. The load curve y − x_l has
    second difference b ε / k: linear for ε = 0, convex for ε > 0.
    """
    if mu_l < 2 * bound * eps:
        raise ValueError(
            f"μ_l = {mu_l} < 2 b ε = {2 * bound * eps}: blocks also move left, so Eq. 8 is not exact"
        )
    return noiseless_equilibrium(n_blocks, k, leftward_friction_mu_eff(eps, bound), y)


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


Simulator = Callable[..., ChainRun]


def phase_table(x: np.ndarray, eps: np.ndarray, asymmetry: np.ndarray, mu_r: float, y: float) -> pd.DataFrame:
    """The phase-diagram table from final positions x (n_eps, n_asym, n_chains, L): one row per cell with
    eps, asymmetry, mu_l, mu_r, curvature (of the chain-mean load curve), curvature_sd (across chains), y
    and the mean elongations elongation_1 … elongation_L."""
    n_blocks = x.shape[-1]
    per_chain = curvature(spring_load_curve(x, y))
    mean_x = x.mean(axis=-2)
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
    simulator: Simulator = simulate,
    **simulate_options: Any,
) -> pd.DataFrame:
    """Curvature of the final load curve over noise ε × friction asymmetry μ_l / μ_r (`phase_table`).

    `simulator`: `simulate` (first order, paper Fig. 3) or `simulate_langevin` (second order, Figs.
    S13/S14), with its own options.
    """
    eps = np.asarray(noise_levels, dtype=np.float64)[:, None]
    asymmetry = np.asarray(friction_asymmetries, dtype=np.float64)[None, :]
    run = simulator(
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
    return phase_table(run.x, eps, asymmetry, mu_r, y)


SIMULATION_KEYS = ("n_blocks", "k", "eta", "y", "n_steps", "noise", "truncation")
"""Keys of config section `springblock` that are options of `simulate`."""

PHASE_KEYS = (*SIMULATION_KEYS, "mu_r", "seed", "phase")
DYNAMICS_KEYS = (*SIMULATION_KEYS, "mu_r", "seed", "dynamics")
SECOND_ORDER_KEYS = ("n_blocks", "k", "y", "truncation", "mu_r", "seed", "phase", "second_order")
LEFTWARD_KEYS = ("n_blocks", "k", "y", "truncation", "seed", "leftward")
"""The keys of config section `springblock` that the phase diagram (Fig. 3), the load dynamics (Fig. 4),
`second_order_phase` (Figs. S13/S14) and `leftward_friction_table` (Fig. 5b) read."""


def simulation_options(section: Mapping[str, Any]) -> dict[str, Any]:
    """The `simulate` options of config section `springblock`."""
    return {key: section[key] for key in SIMULATION_KEYS}


def leftward_friction_table(section: Mapping[str, Any]) -> pd.DataFrame:
    """Fig. 5(b) from config section `springblock` (its `leftward` grid): the μ_r = 0 chain simulated for
    every (ε, μ_l) beside paper Eq. 8.

    One row per (eps, mu_l, layer l = 0 … L): `simulated` (y − x_l of the chain-mean final positions),
    `eq8` (the same from `leftward_friction_equilibrium`) and, per cell, `max_error` (the largest
    |x − x_Eq.8| over chains and blocks), `curvature_simulated` and `curvature_eq8` of the two curves.
    """
    grid = section["leftward"]
    n_blocks, k, y = section["n_blocks"], section["k"], section["y"]
    eps = np.asarray(grid["eps"], dtype=np.float64)[:, None]
    mu_l = np.asarray(grid["mu_l"], dtype=np.float64)[None, :]
    run = simulate(
        eps,
        mu_l,
        0.0,
        n_blocks=n_blocks,
        k=k,
        eta=grid["eta"],
        y=y,
        n_steps=grid["n_steps"],
        n_chains=grid["n_chains"],
        noise=grid["noise"],
        truncation=section["truncation"],
        seed=section["seed"],
    )
    bound = noise_bound(grid["noise"], section["truncation"])
    frames = []
    for i, e in enumerate(grid["eps"]):
        for j, m in enumerate(grid["mu_l"]):
            expected = leftward_friction_equilibrium(e, m, bound=bound, n_blocks=n_blocks, k=k, y=y)
            simulated = spring_load_curve(run.x[i, j].mean(axis=0), y)
            eq8 = spring_load_curve(expected, y)
            frames.append(
                pd.DataFrame(
                    {
                        "eps": e,
                        "mu_l": m,
                        "layer": np.arange(n_blocks + 1),
                        "simulated": simulated,
                        "eq8": eq8,
                        "max_error": np.abs(run.x[i, j] - expected).max(),
                        "curvature_simulated": curvature(simulated),
                        "curvature_eq8": curvature(eq8),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def second_order_phase(section: Mapping[str, Any]) -> pd.DataFrame:
    """Figs. S13/S14 from config section `springblock`: `phase_diagram` of the second-order chain on the grid
    of `phase`, once per noise placement of `second_order.noise_on` (column `noise_on`)."""
    grid, order = section["phase"], section["second_order"]
    options = {key: order[key] for key in ("gamma", "dt", "noise_decay", "noise")}
    frames = [
        phase_diagram(
            grid["eps"],
            grid["asymmetry"],
            mu_r=section["mu_r"],
            n_blocks=section["n_blocks"],
            n_chains=grid["n_chains"],
            n_steps=order["n_steps"],
            y=section["y"],
            seed=section["seed"],
            simulator=simulate_langevin,
            k=section["k"],
            truncation=section["truncation"],
            shared_noise=grid["shared_noise"],
            noise_on=noise_on,
            **options,
        ).assign(noise_on=noise_on)
        for noise_on in order["noise_on"]
    ]
    return pd.concat(frames, ignore_index=True)


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
