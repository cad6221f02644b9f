"""Per-sample temporal consistency of clean against noisy-label training on test and corrupted data
(docs/definitions.md §2-3; paper 1, Sec. 5, Figs. 7, 16, 17 and Table 1).

The value compared is c(x; t − W, t), memory side, at the last reference epoch t of a composite file
(`BandResult.sample_consistency`), for a window of W analysed epochs. `consistency_frame` gathers it
from many composite files into one tidy frame (one row per sample); `welch_consistency_table`,
`kde_frame` and `table1_markdown` summarise that frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from featdyn.composite_results import BandResult
from featdyn.stats import reflected_kde, share_at_one, welch_markdown, welch_table

GROUP = ["pair", "eval_set", "depth"]


# --- per-sample values and their summaries -----------------------------------------------------------


def memory_consistency(band: BandResult, window: int) -> tuple[np.ndarray, int, int]:
    """c(x; t − W, t) per sample at the band's last reference epoch t: (values, t, t − W in epochs)."""
    if not 0 <= window <= band.window:
        raise ValueError(
            f"stats.window = {window} is outside the composite band's 0..{band.window} analysed epochs "
            "(config key composite.window)"
        )
    t = int(band.reference_epochs[-1])
    t_index = int(np.flatnonzero(band.epochs == t)[0])
    if t_index < window:
        raise ValueError(
            f"stats.window = {window} reaches before the first analysed epoch from t = {t}; lower it or "
            "use a later last reference epoch (composite.reference_epochs)"
        )
    return band.sample_consistency[-1, 0, window], t, int(band.epochs[t_index - window])


def consistency_frame(
    entries: Iterable[tuple[Mapping[str, object], BandResult]], window: int
) -> pd.DataFrame:
    """One row per sample and composite file: the file's labels (e.g. pair, condition, run, eval_set,
    depth), `epoch` t, `start_epoch` t − W and `value` c(x; t − W, t)."""
    frames = []
    for labels, band in entries:
        values, t, start = memory_consistency(band, window)
        frames.append(pd.DataFrame({**labels, "epoch": t, "start_epoch": start, "value": values}))
    return pd.concat(frames, ignore_index=True)


def welch_consistency_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1: Welch's test clean vs. noisy per (pair, eval set, depth), in the frame's order, with
    the share of samples at c = 1 of each condition and the epochs compared."""
    table = welch_table(frame, by=GROUP)
    shares = (
        frame.groupby([*GROUP, "condition"])["value"]
        .agg(share_at_one)
        .unstack("condition")
        .rename(columns=lambda c: f"share_{c}")
    )
    epochs = frame.groupby(GROUP)[["epoch", "start_epoch"]].first()
    table = table.merge(shares.reset_index(), on=GROUP).merge(epochs.reset_index(), on=GROUP)
    order = {column: pd.unique(frame[column]) for column in GROUP}
    table = table.sort_values(
        GROUP, key=lambda c: pd.Categorical(c, categories=order[c.name], ordered=True)
    ).reset_index(drop=True)
    leading = [*GROUP, "epoch", "start_epoch", "mean_clean", "mean_noisy", "share_clean", "share_noisy"]
    return table[leading + [c for c in table.columns if c not in leading]]


def kde_frame(frame: pd.DataFrame, by: Sequence[str] = (*GROUP, "condition")) -> pd.DataFrame:
    """Reflected KDE of `value` on [0, 1] per group: columns `by`, `consistency` (grid), `density`,
    and `share_at_one` (the point mass the density cannot show)."""
    rows = []
    for key, group in frame.groupby(list(by), sort=False):
        grid, density = reflected_kde(group["value"].to_numpy())
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        share = share_at_one(group["value"].to_numpy())
        rows.append(pd.DataFrame({**labels, "consistency": grid, "density": density, "share_at_one": share}))
    return pd.concat(rows, ignore_index=True)


def table1_markdown(table: pd.DataFrame, window: int, pairs: Mapping[str, Mapping[str, str]]) -> str:
    """Markdown rendering of Table 1 with a caption line naming the compared runs, t and W."""
    epochs = ", ".join(
        sorted({f"t = {t}, t − W = {s}" for t, s in zip(table["epoch"], table["start_epoch"])})
    )
    compared = "; ".join(f"{name}: {p['clean']} vs. {p['noisy']}" for name, p in pairs.items())
    caption = (
        f"**Table 1.** Welch's t-test of per-sample temporal consistency c(x; t − W, t), memory side, "
        f"W = {window} analysed epochs ({epochs}), clean vs. noisy-label training ({compared}), per split "
        "depth and evaluation set; share = fraction of samples with c = 1; Hedges' g > 0 when the clean "
        "run is more consistent."
    )
    return caption + "\n\n" + welch_markdown(table.drop(columns=["epoch", "start_epoch"]))
