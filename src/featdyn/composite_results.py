"""Composite results without torch: the band of per-pair metrics, the memory window, and their files.

Figure and table jobs read composite files through this module, so they start without importing torch.
The engine that computes a `BandResult` is `featdyn.composite` (docs/definitions.md §1-2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, load_arrays, save_arrays


@dataclass
class BandResult:
    """Composite metrics over the band |s − t| ≤ w (arrays indexed [k + w, t], NaN outside the epochs)."""

    epochs: np.ndarray  # (E,) analysed epochs
    window: int
    accuracy: np.ndarray  # (2w+1, E)
    cross_entropy: np.ndarray
    agreement: np.ndarray  # share with argmax c_{s,t} == argmax f^(t)
    consistency: np.ndarray  # dataset-level C(s, t), agree variant
    consistency_correct: np.ndarray  # C(s, t), correct variant
    reference_epochs: np.ndarray  # (R,) epochs t with per-sample consistency
    # per-sample c(x; t ∓ j, t) for j = 0..w: (R, 2, w+1, N), direction 0 = memory, 1 = transferability
    sample_consistency: np.ndarray
    sample_consistency_correct: np.ndarray
    peak_rss_mb: float = 0.0

    @property
    def offsets(self) -> np.ndarray:
        return np.arange(-self.window, self.window + 1)

    def pair_value(self, name: str, s_index: int, t_index: int) -> float:
        return float(getattr(self, name)[s_index - t_index + self.window, t_index])


def memory_window(result: BandResult, threshold: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """W_θ(t): the largest w (in epochs) with C(t − w, t) ≥ θ; and whether it hit the band's edge."""
    w = result.window
    memory_side = result.consistency[w::-1]  # [j, t] = C(t − j, t)
    ok = np.nan_to_num(memory_side, nan=-1.0) >= threshold
    largest = np.where(ok.any(0), (w - np.argmax(ok[::-1], axis=0)), 0)
    t_idx = np.arange(len(result.epochs))
    s_idx = np.clip(t_idx - largest, 0, None)
    censored = (largest == w) | (s_idx == 0)
    return result.epochs[t_idx] - result.epochs[s_idx], censored


BAND_ARRAYS = (
    "epochs",
    "accuracy",
    "cross_entropy",
    "agreement",
    "consistency",
    "consistency_correct",
    "reference_epochs",
    "sample_consistency",
    "sample_consistency_correct",
)


def write_band(result: BandResult, path: str | Path, provenance: Mapping, threshold: float) -> None:
    """One composite HDF5 file: band matrices, per-sample consistency, memory window."""
    window, censored = memory_window(result, threshold)
    with atomic_h5(path, provenance) as f:
        save_arrays(f, {name: getattr(result, name) for name in BAND_ARRAYS})
        save_arrays(f, {"memory_window": window, "memory_window_censored": censored})
        f.attrs.update(window=result.window, threshold=threshold, peak_rss_mb=result.peak_rss_mb)


def read_band(path: str | Path) -> BandResult:
    with open_h5(path, BAND_ARRAYS, attrs=("window", "peak_rss_mb")) as f:
        arrays = load_arrays(f)
        return BandResult(
            window=int(f.attrs["window"]),
            peak_rss_mb=float(f.attrs["peak_rss_mb"]),
            **{name: arrays[name] for name in BAND_ARRAYS},
        )


MEMORY_WINDOW_COLUMNS = ["depth", "epoch", "memory_window", "censored"]
MEMORY_WINDOW_ENTRIES = ("epochs", "memory_window", "memory_window_censored")


def memory_window_frame(files: Iterable[tuple[Mapping[str, Any], str | Path]]) -> pd.DataFrame:
    """Memory window W(t) of composite files, each given with its labels (e.g. run, eval_set, depth).

    One row per file and analysed epoch: the labels, epoch, memory_window and censored (the window
    reached the band's edge or epoch 0, so it is a lower bound).
    """
    frames = []
    for labels, path in files:
        with open_h5(path, MEMORY_WINDOW_ENTRIES) as f:
            frames.append(
                pd.DataFrame(
                    {
                        **labels,
                        "epoch": f["epochs"][()],
                        "memory_window": f["memory_window"][()],
                        "censored": f["memory_window_censored"][()].astype(bool),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MEMORY_WINDOW_COLUMNS)
