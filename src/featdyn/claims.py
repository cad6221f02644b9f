"""Paper 1's claims read off a finished run: one table per claim, each row with the numbers and whether
the claim's stated criterion holds there (docs/definitions.md §15).

The criteria are mechanical and written beside each table, so the reading can be checked and argued
with; they decide nothing about effect sizes. Torch-free: it reads the stages' tables and HDF5 files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from featdyn.composite_results import BandResult
from featdyn.dynamics_results import Drift
from featdyn.stats import markdown_table

SIGNIFICANCE = 0.05


@dataclass
class Claim:
    """One claim of paper 1: its name, the criterion that decides `holds` per row, and the rows."""

    name: str
    criterion: str
    table: pd.DataFrame

    @property
    def verdict(self) -> str:
        if self.table.empty:
            return "not computed"
        if "holds" not in self.table:
            return "numbers only"
        decided = self.table["holds"].dropna()
        undecided = len(self.table) - len(decided)
        verdict = f"holds in {int(decided.sum())} of {len(decided)}" if len(decided) else "undecided"
        return verdict + (f" ({undecided} undecided)" if len(decided) and undecided else "")


def _window_label(window: int, censored: bool) -> str:
    """A memory window, `+` when it is only a lower bound."""
    return f"{window}{'+' if censored else ''}"


def _nearest_index(epochs: np.ndarray, epoch: float) -> int:
    return int(np.argmin(np.abs(np.asarray(epochs) - epoch)))


def memory_window_claim(memory: pd.DataFrame) -> Claim:
    """Fig. 3: W(t) widens as training goes on. `memory` has run, depth, epoch, memory_window, censored."""
    rows = []
    for (run, depth), group in memory.groupby(["run", "depth"], sort=False):
        start = group["epoch"].min()
        group = group[group["epoch"] > start].sort_values("epoch")
        if group.empty:
            continue
        first, last = group.iloc[0], group.iloc[-1]
        saturated = bool(last.memory_window >= last.epoch - start)
        rows.append(
            {
                "run": run,
                "depth": depth,
                "epochs": f"{int(first.epoch)}–{int(last.epoch)}",
                "W(t) (+: lower bound)": ", ".join(
                    map(_window_label, group["memory_window"], group["censored"])
                ),
                "saturated": saturated,
                "holds": None if saturated else bool(last.memory_window > first.memory_window),
            }
        )
    return Claim(
        "memory window widens over training (Fig. 3)",
        "W at the last analysed epoch > W at the first after the start; undecided (saturated) when the "
        "last window reaches back to the first analysed epoch, so it cannot show whether it widens",
        pd.DataFrame(rows),
    )


def accuracy_deltas(band: BandResult, t_index: int, direction: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch gaps |s − t| and acc(c_{s,t}) − acc(f^(t)) for s = t + direction·k, k = 1..w inside the band."""
    offsets = direction * np.arange(1, band.window + 1)
    offsets = offsets[(t_index + offsets >= 0) & (t_index + offsets < len(band.epochs))]
    column = band.accuracy[:, t_index]
    gaps = np.abs(band.epochs[t_index + offsets] - band.epochs[t_index]).astype(int)
    return gaps, column[offsets + band.window] - column[band.window]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _delta_row(labels: Mapping[str, object], band: BandResult, t_index: int, direction: int) -> dict:
    gaps, deltas = accuracy_deltas(band, t_index, direction)
    return {
        **labels,
        "t": int(band.epochs[t_index]),
        "acc f(t)": band.pair_value("accuracy", t_index, t_index),
        "gaps": f"{gaps.min()}–{gaps.max()}" if len(gaps) else "",
        "Δacc nearest": deltas[0] if len(deltas) else np.nan,
        "Δacc farthest": deltas[-1] if len(deltas) else np.nan,
        "mean Δacc": deltas.mean() if len(deltas) else np.nan,
        "Spearman ρ(gap, Δacc)": _spearman(gaps, deltas),
    }


def forgetting_claim(bands: Sequence[tuple[Mapping[str, object], BandResult]]) -> Claim:
    """Fig. 4: old shallow features serve the current deep part less the older they are (memory side)."""
    rows = []
    for labels, band in bands:
        row = _delta_row(labels, band, len(band.epochs) - 1, -1)
        rho = row["Spearman ρ(gap, Δacc)"]
        rows.append({**row, "holds": None if np.isnan(rho) else bool(rho < 0)})
    return Claim(
        "forgetting grows as the gap widens (Fig. 4)",
        "at the last analysed epoch t, acc(c_{t−k,t}) − acc(f^(t)) falls with k: Spearman ρ < 0",
        pd.DataFrame(rows),
    )


def transferability_claim(bands: Sequence[tuple[Mapping[str, object], BandResult]]) -> Claim:
    """Fig. 5: new shallow features transfer to an old deep part (transferability side, mid-training t)."""
    rows = []
    for labels, band in bands:
        row = _delta_row(labels, band, (len(band.epochs) - 1) // 2, +1)
        rows.append({**row, "holds": None if np.isnan(row["mean Δacc"]) else bool(row["mean Δacc"] >= 0)})
    return Claim(
        "later shallow features transfer to earlier deep parts (Fig. 5)",
        "at the middle analysed epoch t, the mean of acc(c_{t+k,t}) − acc(f^(t)) over k is ≥ 0",
        pd.DataFrame(rows),
    )


def consistency_collapse_claim(welch: pd.DataFrame) -> Claim:
    """Table 1: noisy-label training lowers per-sample temporal consistency (Welch's t-test)."""
    names = {"mean_clean": "mean clean", "mean_noisy": "mean noisy", "hedges_g": "Hedges' g"}
    table = welch[["pair", "eval_set", "depth", *names, "p"]].rename(columns=names)
    table["holds"] = (table["mean noisy"] < table["mean clean"]) & (table["p"] < SIGNIFICANCE)
    return Claim(
        "noisy labels lower temporal consistency (Table 1)",
        f"mean c(x; t − W, t) of the noisy run below the clean run's, Welch p < {SIGNIFICANCE}",
        table,
    )


def anisotropy_claim(isotropy: pd.DataFrame) -> Claim:
    """Sec. 6: one-step SGD noise is anisotropic (bootstrap test of ||Σ̃ − I||_F against isotropy)."""
    names = {
        "p": "feature dim",
        "effective_rank": "effective rank",
        "top_share_1": "top-1 share",
        "bootstrap_p": "bootstrap p",
        "john_p": "John p",
    }
    table = isotropy[["run", "epoch", "depth", "M", *names]].rename(columns=names)
    table["holds"] = table["bootstrap p"] < SIGNIFICANCE
    return Claim(
        "SGD noise is anisotropic (Sec. 6, Fig. 8)",
        f"the isotropy bootstrap of ||Σ̃ − I||_F rejects at p < {SIGNIFICANCE}",
        table,
    )


def anisotropy_memory_claim(isotropy: pd.DataFrame, memory: pd.DataFrame) -> Claim:
    """Sec. 6: anisotropy beside the memory window at the same run, depth and nearest analysed epoch."""
    rows = []
    for row in isotropy.itertuples(index=False):
        windows = memory[(memory["run"] == row.run) & (memory["depth"] == row.depth)]
        if windows.empty:
            continue
        nearest = windows.iloc[_nearest_index(windows["epoch"], row.epoch)]
        rows.append(
            {
                "run": row.run,
                "depth": row.depth,
                "epoch": row.epoch,
                "effective rank": row.effective_rank,
                "W epoch": int(nearest.epoch),
                "W": _window_label(nearest.memory_window, nearest.censored),
            }
        )
    return Claim(
        "anisotropy and the memory window (Sec. 6)",
        "numbers only: the paper relates low-dimensional noise to long memory; read the pairs",
        pd.DataFrame(rows),
    )


def drift_claim(drifts: Mapping[str, Drift], memory: pd.DataFrame) -> Claim:
    """Fig. 11: memory is not a convergence artifact: the remembered epoch's weights are far from θ_T."""
    rows = []
    for run, drift in drifts.items():
        windows = memory[memory["run"] == run].sort_values("epoch")
        for depth_index, depth in enumerate(drift.depths):
            last = windows[windows["depth"] == depth]
            if last.empty:
                continue
            last = last.iloc[-1]
            remembered = int(last.epoch - last.memory_window)
            i = _nearest_index(drift.epochs, remembered)
            rows.append(
                {
                    "run": run,
                    "depth": int(depth),
                    "T": int(drift.epochs[-1]),
                    "W(T)": _window_label(last.memory_window, last.censored),
                    "epoch T − W": int(drift.epochs[i]),
                    "shallow parameter drift": float(drift.parameter_drift[i, :depth].mean()),
                    "feature drift": float(drift.feature_drift[i, depth_index]),
                }
            )
    return Claim(
        "memory is not a convergence artifact (Fig. 11)",
        "numbers only: the relative distance ||θ_t − θ_T|| / ||θ_T|| of the shallow stages at the oldest "
        "remembered epoch T − W(T), beside the feature drift there; memory that is not a convergence "
        "artifact shows a large parameter drift",
        pd.DataFrame(rows),
    )


def accuracy_difference_se(a: float, b: float, n: int) -> float:
    """Standard error of a − b for two accuracies on the same n samples, taken as independent binomials
    (conservative: predictions of two continuations of one run are positively correlated)."""
    return float(np.sqrt((a * (1 - a) + b * (1 - b)) / n))


def freezing_claim(
    continuations: Mapping[str, Mapping[int, pd.DataFrame]], test_sizes: Mapping[str, int]
) -> Claim:
    """Fig. 18: freezing shallow stages for the rest of training lowers the final test accuracy."""
    rows = []
    for run, by_depth in continuations.items():
        unfrozen = float(by_depth[0]["test_acc"].iloc[-1])
        for depth, metrics in by_depth.items():
            if depth == 0:
                continue
            final = float(metrics["test_acc"].iloc[-1])
            se = accuracy_difference_se(final, unfrozen, test_sizes[run])
            rows.append(
                {
                    "run": run,
                    "frozen up to depth": depth,
                    "from epoch": int(metrics["epoch"].iloc[0]),
                    "test acc unfrozen": unfrozen,
                    "test acc frozen": final,
                    "Δ": final - unfrozen,
                    "2 SE": 2 * se,
                    "holds": final - unfrozen < -2 * se,
                }
            )
    return Claim(
        "freezing shallow stages lowers accuracy (Fig. 18)",
        "final test accuracy of the frozen continuation below the unfrozen continuation's by more than two "
        "standard errors of the difference (independent binomials on the test set's n samples)",
        pd.DataFrame(rows),
    )


def reinit_claim(reinit: pd.DataFrame) -> Claim:
    """App. F.A: re-initialising and retraining the deep stages degrades robustness: mCE rises."""
    rows = []
    for run, group in reinit.groupby("run", sort=False):
        baseline = group[group["network"] == "baseline"].iloc[0]
        for row in group[group["network"] != "baseline"].itertuples(index=False):
            rows.append(
                {
                    "run": run,
                    "network": row.network,
                    "clean error": row.clean_error,
                    "clean error baseline": baseline.clean_error,
                    "mCE": row.mce,
                    "mCE baseline": baseline.mce,
                    "holds": None if np.isnan(row.mce) else bool(row.mce > baseline.mce),
                }
            )
    return Claim(
        "re-initialising deep stages raises mCE (App. F.A)",
        "mCE (%, mean error over the benchmark corruptions present) of the re-initialised and retrained "
        "network above the baseline's; undecided without benchmark corruptions",
        pd.DataFrame(rows),
    )


def accuracy_table(metrics: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for run, m in metrics.items():
        last = m.iloc[-1]
        rows.append(
            {
                "run": run,
                "epochs": int(last.epoch),
                "train acc": last.train_acc,
                "test acc": last.test_acc,
                "best test acc": m["test_acc"].max(),
            }
        )
    return pd.DataFrame(rows)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def frame_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "_nothing to read: the stage did not run for this config._\n"
    return markdown_table(
        list(table.columns), ([_cell(v) for v in row] for row in table.itertuples(index=False))
    )


def claims_markdown(accuracy: pd.DataFrame, claims: Sequence[Claim]) -> str:
    """The reading: a summary of every claim's verdict, then the accuracies and one table per claim."""
    lines = [
        "# Paper 1, claim by claim",
        "",
        "Computed by featdyn from this run's results; each criterion is stated under its claim. "
        "`+` marks a memory window that is only a lower bound.",
        "",
        "| claim | verdict |",
        "|---|---|",
        *[f"| {c.name} | {c.verdict} |" for c in claims],
        "",
        "## Accuracy",
        "",
        frame_markdown(accuracy),
    ]
    for claim in claims:
        lines += [f"## {claim.name}", "", f"Criterion: {claim.criterion}.", "", frame_markdown(claim.table)]
    return "\n".join(lines)


def paper1_claims(
    memory: pd.DataFrame,
    bands: Sequence[tuple[Mapping[str, object], BandResult]],
    drifts: Mapping[str, Drift],
    continuations: Mapping[str, Mapping[int, pd.DataFrame]],
    test_sizes: Mapping[str, int],
    welch: pd.DataFrame | None = None,
    isotropy: pd.DataFrame | None = None,
    reinit: pd.DataFrame | None = None,
) -> list[Claim]:
    """Every claim the given results can speak to; tables a config did not produce are None."""
    claims = [memory_window_claim(memory)]
    claims += [forgetting_claim(bands), transferability_claim(bands)]
    if welch is not None:
        claims.append(consistency_collapse_claim(welch))
    if isotropy is not None:
        claims += [anisotropy_claim(isotropy), anisotropy_memory_claim(isotropy, memory)]
    claims += [drift_claim(drifts, memory), freezing_claim(continuations, test_sizes)]
    if reinit is not None:
        claims.append(reinit_claim(reinit))
    return claims
