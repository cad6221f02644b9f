"""Figures: one module per analysis, one shared look.

Every figure function takes tidy data (numpy arrays or pandas frames) and returns a matplotlib
Figure; `save_figure` writes it atomically so Snakemake never sees half a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from featdyn.io import atomic_path  # noqa: E402

CLEAN_NOISY_PALETTE = {"clean": "#1f77b4", "noisy": "#d62728"}


def set_theme() -> None:
    """The one seaborn theme every featdyn figure uses."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15, rc={"figure.dpi": 120})


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Save `fig` atomically in the format given by the suffix of `path`, then close it."""
    suffix = os.path.splitext(str(path))[1] or ".png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix.lstrip("."), bbox_inches="tight", dpi=150)
    plt.close(fig)


def depth_label(depth: int, labels: Mapping[int, str] | None = None) -> str:
    """A depth (or stage) as labelled by `featdyn.planning.stage_labels`, e.g. `3 (block1.2)`; the bare
    number without labels."""
    return labels[depth] if labels and depth in labels else str(depth)
