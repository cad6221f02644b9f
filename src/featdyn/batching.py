"""Splitting work into chunks: slices of samples or epochs that fit a batch size or a memory budget."""

from __future__ import annotations


def chunk_slices(total: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` (at least 1) covering range(total)."""
    size = max(1, int(size))
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]
