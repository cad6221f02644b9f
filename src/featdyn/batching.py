"""Splitting work into chunks: slices of samples or epochs that fit a batch size or a memory budget.

Forward passes are split freely (by budget, by an out-of-memory back-off) because a sample's result
does not depend on the batch it was computed in — provided the batch has at least `MIN_ROWS` rows:
below a few rows the CPU convolution kernels (oneDNN) switch to other algorithms that round
differently. `padded_forward` therefore never runs fewer rows than that.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MIN_ROWS = 8
"""Rows every forward pass runs at least (smaller batches are padded with copies of their last row)."""


def chunk_slices(total: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` (at least 1) covering range(total)."""
    size = max(1, int(size))
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


def padded_forward(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, out_dim: int = 0
) -> torch.Tensor:
    """`fn(x)` for rows x (dim 0), run on at least `MIN_ROWS` rows; output rows along `out_dim`."""
    n = len(x)
    if n >= MIN_ROWS:
        return fn(x)
    padded = torch.cat([x, x[-1:].expand(MIN_ROWS - n, *x.shape[1:])])
    return fn(padded).narrow(out_dim, 0, n)
