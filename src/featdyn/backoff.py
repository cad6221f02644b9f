"""Back-off on device out-of-memory errors: a chunk size that halves and retries.

Stages that evaluate many forward passes (composite, separation, isotropy) size their chunks from a
memory budget; a device can still run out (other processes, fragmentation, a budget set too high).
`Backoff.run(fn)` calls `fn(size)` and, on an out-of-memory error, halves `size` and calls again,
down to `minimum`. Callers only split work into smaller pieces whose results they combine in the same
order as before, so a back-off does not change a result (where it may, in the last bits, `effect` says
so in the log). The first halving is logged once per `Backoff`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")
LOG = logging.getLogger("featdyn")

_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device (CUDA, MPS, CPU allocator) out-of-memory error."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MESSAGES)


def release_cached_memory() -> None:
    """Give the CUDA caching allocator's free blocks back before a retry."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Backoff:
    """A chunk size (rows per forward pass, epochs per chunk, ...) that halves on out-of-memory errors."""

    def __init__(self, what: str, size: int, minimum: int = 1, effect: str = "results are unchanged"):
        self.what, self.effect = what, effect
        self.size = max(int(size), int(minimum))
        self.minimum = int(minimum)
        self.halvings = 0

    def run(self, fn: Callable[[int], T]) -> T:
        """`fn(self.size)`, retried with half the size after each out-of-memory error."""
        while True:
            try:
                return fn(self.size)
            except Exception as error:
                if not is_out_of_memory(error) or self.size <= self.minimum:
                    raise
                self.halve(error)

    def halve(self, error: BaseException) -> None:
        new = max(self.minimum, self.size // 2)
        if self.halvings == 0:
            LOG.warning(
                "%s: device out of memory at %d (%s); continuing with %d, halving again on each further "
                "out-of-memory error (%s)",
                self.what,
                self.size,
                str(error).splitlines()[0][:200] if str(error) else type(error).__name__,
                new,
                self.effect,
            )
        self.size = new
        self.halvings += 1
        release_cached_memory()
