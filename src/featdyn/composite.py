"""Composite networks `c_{s,t}(x) = g^(t)(h^(s)(x))` over many checkpoint pairs, and temporal consistency.

The engine (docs/definitions.md §1-2) is organised for the real workload (hundreds of checkpoints, tens of
thousands of samples) and costs what the definitions cost at the least: one shallow forward pass per
(epoch, sample) and one deep forward pass per (pair, sample), nothing else of any size.

- Checkpoint weights are read from `checkpoints.h5` in blocks of consecutive epochs (`EpochStates`), so
  memory does not grow with the number of epochs; a block is kept while it is used.
- For each batch of samples, the shallow features h^(s)(x) of a chunk of epochs s are computed once and
  kept; every deep part g^(t) with |s − t| ≤ w then runs on them. Features of several s that meet the
  same t are concatenated into one forward pass of up to `batch_size` rows.
- Two strategies run the forward passes: `loop` calls each checkpoint's stages through `functional_call`
  (bit-identical to the plain network's forward pass; fastest on CPUs), `vmap` batches many
  checkpoints into one call over their stacked weights (fewest kernel launches; for GPUs). `auto` takes
  `loop` on CPUs and `vmap` on other devices where vmap can batch the model.
- Image models run in channels_last memory format (`memory_format: auto`), which the CPU and GPU
  convolution kernels prefer; logits then differ from those of the contiguous format in the last bits.
- Predictions and per-sample cross-entropies of a whole batch are filled in before any sum is taken, and
  per-sample consistency for every s of the window comes from cumulative counts of the agreement
  indicators outward from the diagonal, never from a recomputation per (s, t). Results do not depend on
  how the work was chunked; on a device out-of-memory error the chunks halve (`featdyn.backoff`).

The memory budget is shared four ways: weight blocks, activations of one forward pass (the engine),
features of the chunk of epochs and the per-batch buffers (`composite_band`). Epoch indices below are
positions in the list of analysed epochs; offsets k < 0 are memory (old shallow, new deep), k > 0
transferability (new shallow, old deep). `naive_reference` follows the definitions literally and
serves tests and the benchmark.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from featdyn.backoff import Backoff
from featdyn.batching import MIN_ROWS, chunk_slices, padded_forward
from featdyn.checkpoints import CheckpointStore, strided_epochs
from featdyn.composite_results import BAND_ARRAYS as BAND_ARRAYS
from featdyn.composite_results import MEMORY_WINDOW_COLUMNS as MEMORY_WINDOW_COLUMNS
from featdyn.composite_results import BandResult
from featdyn.composite_results import memory_window as memory_window
from featdyn.composite_results import memory_window_frame as memory_window_frame
from featdyn.composite_results import read_band as read_band
from featdyn.composite_results import write_band as write_band
from featdyn.models import Staged, check_depth, preferred_memory_format

# The names above are re-exported: figure jobs import them from featdyn.composite_results (no torch).

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "loop", "vmap")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
PRECISIONS = ("fp32", "bf16")

WEIGHTS_SHARE = 0.25
"""Share of the memory budget for blocks of checkpoint weights (shallow and deep half each)."""
ACTIVATIONS_SHARE = 0.25
"""Share for the activations of one forward pass (caps its rows)."""
FEATURES_SHARE = 0.25
"""Share for the shallow features of the chunk of epochs held for one batch of samples."""
BUFFERS_SHARE = 0.25
"""Share for one batch's predictions, per-sample cross-entropies and consistency counts."""
LIVE_ACTIVATIONS = 4
"""Activations alive at once in a forward pass, in units of the largest stage output."""
DEFAULT_ROWS = 512
"""Rows per forward pass when no batch size is given (CPU caches favour a few hundred)."""


def stage_state(state: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Entries of a (stacked) state dict that belong to stages[start:stop], without BN step counters."""
    prefixes = tuple(f"stages.{i}." for i in range(start, stop))
    return {
        k: v for k, v in state.items() if k.startswith(prefixes) and not k.endswith("num_batches_tracked")
    }


def stage_names(names: Sequence[str], start: int, stop: int) -> list[str]:
    """The names among `names` that belong to stages[start:stop], without BN step counters."""
    return list(stage_state(dict.fromkeys(names), start, stop))


# --- checkpoint weights, read in blocks ------------------------------------------------------------


@dataclass
class EpochStates:
    """The state entries of the analysed checkpoints, read a block of consecutive epochs at a time.

    `read(positions, names)` returns name → (n, ...) tensors on `device` for the epochs at `positions`
    of the analysed list: from a `CheckpointStore` they are read from HDF5, from stacked tensors they
    are slices.
    """

    n_epochs: int
    names: list[str]
    epoch_bytes: dict[str, int]  # bytes of one epoch's entry
    device: torch.device
    _read: Callable[[slice, list[str]], dict[str, torch.Tensor]] = field(repr=False)

    @classmethod
    def from_store(
        cls, store: CheckpointStore, epochs: Sequence[int], device: str | torch.device = "cpu"
    ) -> EpochStates:
        epochs = list(epochs)
        first = store.state_dict(epochs[0])
        device = torch.device(device)

        def read(positions: slice, names: list[str]) -> dict[str, torch.Tensor]:
            return {k: v.to(device) for k, v in store.stacked(epochs[positions], names).items()}

        sizes = {k: v.numel() * v.element_size() for k, v in first.items()}
        return cls(len(epochs), list(first), sizes, device, read)

    @classmethod
    def from_stacked(cls, stacked: Mapping[str, torch.Tensor]) -> EpochStates:
        first = next(iter(stacked.values()))

        def read(positions: slice, names: list[str]) -> dict[str, torch.Tensor]:
            return {k: stacked[k][positions] for k in names}

        sizes = {k: v[0].numel() * v.element_size() for k, v in stacked.items()}
        return cls(first.shape[0], list(stacked), sizes, first.device, read)

    def bytes_per_epoch(self, names: Sequence[str]) -> int:
        return sum(self.epoch_bytes[n] for n in names)

    def read(self, positions: slice, names: list[str]) -> dict[str, torch.Tensor]:
        return self._read(positions, names)


class BlockCache:
    """One block of consecutive epochs of some state entries, prepared for the forward pass and kept
    until an epoch outside it is asked for."""

    def __init__(
        self,
        states: EpochStates,
        names: list[str],
        block_epochs: int,
        prepare: Callable[[str, torch.Tensor], torch.Tensor],
    ):
        self.states, self.names, self.prepare = states, names, prepare
        self.block_epochs = max(1, min(int(block_epochs), states.n_epochs))
        self.block = slice(0, 0)
        self.tensors: dict[str, torch.Tensor] = {}
        self.reads = 0

    def _load(self, i: int) -> None:
        if not self.block.start <= i < self.block.stop:
            self.tensors = {}  # free the old block before the new one arrives
            start = (i // self.block_epochs) * self.block_epochs
            self.block = slice(start, min(start + self.block_epochs, self.states.n_epochs))
            raw = self.states.read(self.block, self.names)
            for name in list(raw):  # one entry at a time: the raw block is freed as it is prepared
                self.tensors[name] = self.prepare(name, raw.pop(name))
            self.reads += 1

    def state(self, i: int) -> dict[str, torch.Tensor]:
        """The entries of epoch position `i`."""
        self._load(i)
        return {k: v[i - self.block.start] for k, v in self.tensors.items()}

    def runs(self, positions: range) -> Iterator[tuple[range, dict[str, torch.Tensor]]]:
        """`positions` split at block edges, each part with its entries stacked (n, ...)."""
        i = positions.start
        while i < positions.stop:
            self._load(i)
            stop = min(positions.stop, self.block.stop)
            lo, hi = i - self.block.start, stop - self.block.start
            yield range(i, stop), {k: v[lo:hi] for k, v in self.tensors.items()}
            i = stop


# --- the engine ----------------------------------------------------------------------------------


def vmap_supported(model: Staged, sample_input: torch.Tensor, states: EpochStates) -> bool:
    """Whether `vmap` over stacked weights runs the whole chain (tried once on up to two checkpoints)."""
    names = stage_names(states.names, 0, model.n_stages)
    state = states.read(slice(0, min(2, states.n_epochs)), names)
    try:
        with torch.no_grad():
            vmap(lambda st: functional_call(model, st, (sample_input,)))(state)
    except Exception:
        return False
    return True


def choose_strategy(model: Staged, sample_input: torch.Tensor, states: EpochStates) -> str:
    """What `auto` runs: the loop on CPUs (fastest there, `benchmarks/composite.py`); elsewhere vmap
    where it can batch the model, else the loop, said in the log."""
    if states.device.type == "cpu":
        return "loop"
    if vmap_supported(model, sample_input, states):
        return "vmap"
    log.warning(
        "vmap cannot batch %s over its checkpoints: the composite engine loops over them instead "
        "(same results)",
        type(model).__name__,
    )
    return "loop"


@dataclass(frozen=True)
class Probe:
    """Bytes per sample of a shallow feature and of one forward pass's activations; logits per sample."""

    feature_bytes: int
    activation_bytes: int
    classes: int


@dataclass
class CompositeEngine:
    """Shallow and deep parts of many checkpoints of one model, evaluated at the hardware's rate.

    `stacked` holds the analysed checkpoints' state entries: a mapping name → (E, ...) tensor, or an
    `EpochStates` that reads them from a checkpoint store in blocks. See the module docstring for
    `strategy`, `memory_format` and the budget.
    """

    model: Staged
    stacked: Mapping[str, torch.Tensor] | EpochStates
    depth: int
    precision: str = "fp32"  # or "bf16" (autocast)
    strategy: str = "auto"
    memory_format: str = "auto"
    memory_budget_mb: float = 1024.0
    states: EpochStates = field(init=False, repr=False)
    _shallow: BlockCache = field(init=False, repr=False)
    _deep: BlockCache = field(init=False, repr=False)
    _rows: Backoff = field(init=False, repr=False)
    _probe: Probe | None = field(init=False, repr=False, default=None)
    _autocast_cast: set[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_depth(self.model, self.depth)
        for name, value, allowed in (
            ("precision", self.precision, PRECISIONS),
            ("strategy", self.strategy, STRATEGIES),
            ("memory_format", self.memory_format, MEMORY_FORMATS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown composite {name} {value!r}; available: {list(allowed)}")
        self.model.eval()
        self.states = (
            self.stacked if isinstance(self.stacked, EpochStates) else EpochStates.from_stacked(self.stacked)
        )
        self.channels_last = self.memory_format == "channels_last" or (
            self.memory_format == "auto" and preferred_memory_format(self.model) == torch.channels_last
        )
        self._autocast_cast = {
            f"{module_name}.{p}"
            for module_name, module in self.model.named_modules()
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
            for p in ("weight", "bias")
        }
        budget = self.memory_budget_mb * 2**20
        shallow_names = stage_names(self.states.names, 0, self.depth)
        deep_names = stage_names(self.states.names, self.depth, self.model.n_stages)
        self._shallow = BlockCache(
            self.states, shallow_names, self._block_epochs(shallow_names, budget), self._prepare
        )
        self._deep = BlockCache(
            self.states, deep_names, self._block_epochs(deep_names, budget), self._prepare
        )
        self._rows = Backoff("composite: rows per forward pass", DEFAULT_ROWS, MIN_ROWS)
        if self.strategy == "auto" and self.states.device.type == "cpu":
            self.strategy = "loop"  # elsewhere `auto` is chosen at the first input (`choose_strategy`)

    def _block_epochs(self, names: list[str], budget: float) -> int:
        return int(budget * WEIGHTS_SHARE / 2 // max(self.states.bytes_per_epoch(names), 1))

    def _prepare(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """A state entry (n, ...) as the forward pass uses it: 4-D conv weights in its memory format;
        with bf16 autocast, conv and linear weights in bf16 (autocast would cast them at every call)."""
        if self.precision == "bf16" and name in self._autocast_cast:
            tensor = tensor.to(torch.bfloat16)
        if self.channels_last and tensor.ndim == 5:
            return torch.stack([w.contiguous(memory_format=torch.channels_last) for w in tensor])
        return tensor

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.states.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _resolve_strategy(self, x: torch.Tensor) -> None:
        if self.strategy == "auto":
            self.strategy = choose_strategy(self.model, x[:1], self.states)

    @property
    def n_epochs(self) -> int:
        return self.states.n_epochs

    @property
    def weight_reads(self) -> int:
        """Blocks of weights read so far (shallow and deep)."""
        return self._shallow.reads + self._deep.reads

    # sizes

    @torch.no_grad()
    def probe(self, x: torch.Tensor) -> Probe:
        """Sizes per sample, from one sample through every stage of the first checkpoint."""
        if self._probe is None:
            h = self._input(x[:1])
            largest, feature = h.numel(), 0
            state = {**self._shallow.state(0), **self._deep.state(0)}
            with self._autocast():
                for i in range(self.model.n_stages):
                    h = self._call(state, h, i, i + 1)
                    largest = max(largest, h.numel())
                    if i == self.depth - 1:
                        feature = h.numel()
            self._probe = Probe(feature * 4, largest * 4 * LIVE_ACTIVATIONS, h.shape[-1])
        return self._probe

    def row_limit(self, x: torch.Tensor, rows: int) -> int:
        """`rows`, capped so the activations of one forward pass fit their share of the budget (but
        at least `MIN_ROWS`)."""
        cap = self.memory_budget_mb * 2**20 * ACTIVATIONS_SHARE // self.probe(x).activation_bytes
        return max(MIN_ROWS, min(int(rows), int(cap)))

    # forward passes

    def _call(
        self, state: Mapping[str, torch.Tensor], x: torch.Tensor, start: int, stop: int | None
    ) -> torch.Tensor:
        return functional_call(self.model, state, (x,), {"start": start, "stop": stop})

    def _in_pieces(
        self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int, out_dim: int
    ) -> torch.Tensor:
        """`fn` on pieces of at most `size` rows (dim 0 of `x`), concatenated along `out_dim`."""
        if len(x) <= size:
            return padded_forward(fn, x, out_dim)
        return torch.cat([padded_forward(fn, part, out_dim) for part in x.split(size)], out_dim)

    def _stacked_calls(
        self,
        state: Mapping[str, torch.Tensor],
        x: torch.Tensor,
        start: int,
        stop: int | None,
        rows: Backoff,
        batched_input: bool,
    ) -> torch.Tensor:
        """vmap over the epochs of `state` (n, ...): groups of epochs and pieces of rows that together
        stay within `rows.size` rows; `x` is (b, ...) shared by every epoch or (n, b, ...) per epoch."""
        n = next(iter(state.values())).shape[0]
        b = x.shape[1] if batched_input else x.shape[0]

        def run(size: int) -> torch.Tensor:
            group = max(1, size // max(b, 1))
            piece = max(1, size // group)
            out = []
            for lo in range(0, n, group):
                sub = {k: v[lo : lo + group] for k, v in state.items()}
                if batched_input:
                    xs = x[lo : lo + group].transpose(0, 1)  # pieces split rows, not epochs

                    def g(part: torch.Tensor, sub=sub) -> torch.Tensor:
                        return vmap(lambda st, h: self._call(st, h, start, stop))(sub, part.transpose(0, 1))

                    out.append(self._in_pieces(g, xs, piece, 1))
                else:

                    def h(part: torch.Tensor, sub=sub) -> torch.Tensor:
                        return vmap(lambda st: self._call(st, part, start, stop))(sub)

                    out.append(self._in_pieces(h, x, piece, 1))
            return torch.cat(out)

        return rows.run(run)

    @torch.no_grad()
    def shallow_features(self, x: torch.Tensor, epochs: range, rows: Backoff | None = None) -> torch.Tensor:
        """h^(s)(x) for s in `epochs`: (len(epochs), batch, ...), in the forward pass's dtype and format."""
        rows = rows or self._rows
        x = self._input(x)
        self._resolve_strategy(x)
        with self._autocast():
            if self.strategy == "vmap":
                return torch.cat(
                    [
                        self._stacked_calls(st, x, 0, self.depth, rows, False)
                        for _, st in self._shallow.runs(epochs)
                    ]
                )
            buffer = None  # (epochs × rows, ...), filled epoch by epoch: no second copy of the features
            for i, s in enumerate(epochs):
                out = rows.run(partial(self._shallow_at, s, x))
                if buffer is None:
                    buffer = torch.empty(
                        (len(epochs) * len(x), *out.shape[1:]),
                        dtype=out.dtype,
                        device=out.device,
                        memory_format=torch.channels_last if out.ndim == 4 and self.channels_last else None,
                    )
                buffer[i * len(x) : (i + 1) * len(x)] = out
            return buffer.unflatten(0, (len(epochs), len(x)))

    def _shallow_at(self, s: int, x: torch.Tensor, size: int) -> torch.Tensor:
        """h^(s)(x) in pieces of `size` rows (no reference to the weights outlives the call)."""
        state = self._shallow.state(s)
        return self._in_pieces(lambda part: self._call(state, part, 0, self.depth), x, size, 0)

    @torch.no_grad()
    def deep_logits(self, t: int, features: torch.Tensor, rows: Backoff | None = None) -> torch.Tensor:
        """g^(t) on a batch of features (rows, ...): float32 logits (rows, classes)."""
        rows = rows or self._rows
        state = self._deep.state(t)
        with self._autocast():
            return rows.run(
                lambda size: self._in_pieces(
                    lambda h: self._call(state, h, self.depth, None), features, size, 0
                )
            ).float()

    @torch.no_grad()
    def pair_logits(
        self, x: torch.Tensor, shallow_epochs: range, window: int, rows: Backoff | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Logits of c_{s,t}(x) for every s in `shallow_epochs` and every t with |s − t| ≤ window.

        Yields groups (s, t, logits): positions s (n,), t (n,) and float32 logits (n, batch, classes).
        The shallow features of `shallow_epochs` are computed once and held meanwhile.
        """
        rows = rows or self._rows
        feats = self.shallow_features(x, shallow_epochs, rows)
        s0, s1, b = shallow_epochs.start, shallow_epochs.stop, len(x)
        deep_epochs = range(max(0, s0 - window), min(self.n_epochs, s1 + window))
        if self.strategy == "vmap":
            with self._autocast():
                for run, state in self._deep.runs(deep_epochs):
                    for k in range(-window, window + 1):
                        lo, hi = max(run.start, s0 - k), min(run.stop, s1 - k)
                        if lo >= hi:
                            continue
                        sub = {n: v[lo - run.start : hi - run.start] for n, v in state.items()}
                        h = feats[lo + k - s0 : hi + k - s0]
                        logits = self._stacked_calls(sub, h, self.depth, None, rows, True).float()
                        t = torch.arange(lo, hi)
                        yield t + k, t, logits
            return
        flat = feats.flatten(0, 1)
        for t in deep_epochs:
            lo, hi = max(s0, t - window), min(s1, t + window + 1)
            logits = self.deep_logits(t, flat[(lo - s0) * b : (hi - s0) * b], rows)
            yield torch.arange(lo, hi), torch.full((hi - lo,), t), logits.unflatten(0, (hi - lo, b))

    # the former interface: whole stacks of epochs at once

    def shallow(self, x: torch.Tensor, epochs: slice = slice(None)) -> torch.Tensor:
        """h^(s)(x) for the epochs in `epochs`: float32 (n_epochs, batch, ...)."""
        return self.shallow_features(x, range(self.n_epochs)[epochs]).float()

    def deep(self, features: torch.Tensor, epochs: slice) -> torch.Tensor:
        """g^(t)(features[i]) for the i-th epoch t of `epochs`: logits (n_epochs, batch, classes)."""
        positions = range(self.n_epochs)[epochs]
        return torch.stack(
            [self.deep_logits(t, self._input(f)) for t, f in zip(positions, features, strict=True)]
        )


def composite_engine(
    model: Staged | None,
    stacked_or_store: Mapping[str, torch.Tensor] | CheckpointStore,
    depth: int,
    precision: str = "fp32",
    *,
    epochs: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    strategy: str = "auto",
    memory_format: str = "auto",
    memory_budget_mb: float = 1024.0,
) -> CompositeEngine:
    """The engine for `depth` over stacked state tensors (name → (E, ...)) or a checkpoint store.

    From a store the `epochs` (default: every saved one) are read in blocks when needed, onto `device`
    (default: CPU); `model` defaults to the store's model. Stacked tensors stay where they are.
    """
    if isinstance(stacked_or_store, CheckpointStore):
        store = stacked_or_store
        device = torch.device(device or "cpu")
        states = EpochStates.from_store(store, store.epochs if epochs is None else epochs, device)
        model = store.build_model() if model is None else model
    else:
        states = EpochStates.from_stacked(stacked_or_store)
        device = states.device
    if model is None:
        raise ValueError("composite_engine needs a model unless it reads a checkpoint store")
    return CompositeEngine(
        model.to(device), states, depth, precision, strategy, memory_format, float(memory_budget_mb)
    )


# --- the band of pairs -------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def composite_band(
    engine: CompositeEngine,
    epochs: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    window: int | None = None,
    reference_epochs: Sequence[int] = (),
    batch_size: int = 256,
    memory_budget_mb: float | None = None,
    progress: bool = False,
) -> BandResult:
    """Accuracy, cross-entropy, agreement and temporal consistency for every pair of the band.

    `window=None` evaluates the full matrix. Per-sample consistency is kept for `reference_epochs`.
    Forward passes take up to `batch_size` rows; samples are evaluated in batches of at most
    `batch_size` (fewer when one batch's buffers would not fit their share of the budget), and the
    shallow features of as many epochs as fit their share are held at once. `memory_budget_mb`
    defaults to the engine's.
    """
    n_epochs, n = engine.n_epochs, len(y)
    w = n_epochs - 1 if window is None else min(int(window), n_epochs - 1)
    n_off = 2 * w + 1
    budget = (engine.memory_budget_mb if memory_budget_mb is None else memory_budget_mb) * 2**20
    ref_idx = [list(epochs).index(e) for e in reference_epochs]
    b = max(1, min(batch_size, n, int(budget * BUFFERS_SHARE / 2 // (n_off * n_epochs * 6))))
    probe = engine.probe(x)
    rows = Backoff("composite: rows per forward pass", engine.row_limit(x, batch_size), MIN_ROWS)
    chunk = Backoff(
        "composite: epochs of shallow features held",
        max(1, min(n_epochs, int(budget * FEATURES_SHARE // (b * probe.feature_bytes)))),
    )
    t_chunk = max(1, int(budget * BUFFERS_SHARE / 2 // (n_off * b * 25)))
    preds = torch.empty(n_off, n_epochs, b, dtype=torch.int16 if probe.classes < 2**15 else torch.long)
    ce = torch.empty(n_off, n_epochs, b, dtype=torch.float32)
    counts = {
        k: torch.zeros(n_off, n_epochs, dtype=torch.long)
        for k in ("correct", "agree", "cons", "cons_correct")
    }
    ce_sum = torch.zeros(n_off, n_epochs, dtype=torch.float64)
    per_sample = torch.full((2, len(ref_idx), 2, w + 1, n), float("nan"), dtype=torch.float64)
    for batch in tqdm(chunk_slices(n, b), desc="composite", unit="batch", disable=not progress):
        xb, yb = x[batch], y[batch]
        bb = len(yb)
        p, c = preds[..., :bb], ce[..., :bb]
        chunk.run(partial(_fill_band, engine, xb, yb, w, rows=rows, preds=p, ce=c))
        y_cpu = yb.cpu()
        ce_sum += c.double().sum(-1)
        for t in chunk_slices(n_epochs, t_chunk):
            columns = p[:, t]
            agree, correct = columns == columns[w][None], columns == y_cpu
            counts["agree"][:, t] += agree.sum(-1)
            counts["correct"][:, t] += correct.sum(-1)
            refs = [(r, i - t.start) for r, i in enumerate(ref_idx) if t.start <= i < t.stop]
            for key, indicator, out in (("cons", agree, 0), ("cons_correct", correct, 1)):
                band = _cumulative_counts(indicator, w)  # (2, w+1, T, b)
                counts[key][:, t] += _to_offset_layout(band.sum(-1), w)
                for r, i in refs:
                    per_sample[out, r, :, :, batch] = band[:, :, i] / _run_lengths(w)
    valid = _band_validity(w, n_epochs)
    lengths = (torch.arange(-w, w + 1).abs() + 1).double()[:, None]
    result = {
        "accuracy": counts["correct"].double() / n,
        "agreement": counts["agree"].double() / n,
        "cross_entropy": ce_sum / n,
        "consistency": counts["cons"].double() / lengths / n,
        "consistency_correct": counts["cons_correct"].double() / lengths / n,
    }
    result = {k: v.masked_fill(~valid, float("nan")).numpy() for k, v in result.items()}
    side_valid = torch.stack([_side_validity(w, n_epochs, -1), _side_validity(w, n_epochs, 1)])[:, :, ref_idx]
    per_sample = per_sample.masked_fill(~side_valid.permute(2, 0, 1)[None, ..., None], float("nan"))
    return BandResult(
        epochs=np.asarray(epochs),
        window=w,
        reference_epochs=np.asarray(reference_epochs, dtype=np.int64),
        sample_consistency=per_sample[0].numpy(),
        sample_consistency_correct=per_sample[1].numpy(),
        peak_rss_mb=_peak_rss_mb(),
        **result,
    )


def _fill_band(
    engine: CompositeEngine,
    xb: torch.Tensor,
    yb: torch.Tensor,
    w: int,
    epochs_per_chunk: int,
    *,
    rows: Backoff,
    preds: torch.Tensor,
    ce: torch.Tensor,
) -> None:
    """Predicted class (−1 outside the epochs) and per-sample CE for every (offset, t) of the band."""
    preds.fill_(-1)
    ce.zero_()
    for chunk in chunk_slices(engine.n_epochs, epochs_per_chunk):
        for s, t, logits in engine.pair_logits(xb, range(chunk.start, chunk.stop), w, rows):
            k = s - t + w
            preds[k, t] = logits.argmax(-1).to(device="cpu", dtype=preds.dtype)
            loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(len(s)), reduction="none")
            ce[k, t] = loss.view(len(s), -1).cpu()


def _run_lengths(w: int) -> torch.Tensor:
    """(w+1, 1, 1... ) number of epochs averaged at offset j = 0..w: j + 1."""
    return torch.arange(1, w + 2, dtype=torch.float64)[None, :, None]


def _cumulative_counts(indicator: torch.Tensor, w: int) -> torch.Tensor:
    """Counts outward from the diagonal: [direction, j, t, x] = Σ_{i≤j} ind[w ∓ i, t, x]."""
    memory = indicator[: w + 1].flip(0).cumsum(0, dtype=torch.int32)  # offsets 0, −1, …, −w
    transfer = indicator[w:].cumsum(0, dtype=torch.int32)  # offsets 0, 1, …, w
    return torch.stack([memory, transfer])


def _band_validity(w: int, n_epochs: int) -> torch.Tensor:
    """valid[k + w, t] = 0 ≤ t + k < E."""
    k = torch.arange(-w, w + 1)[:, None]
    t = torch.arange(n_epochs)[None, :]
    return (t + k >= 0) & (t + k < n_epochs)


def _side_validity(w: int, n_epochs: int, direction: int) -> torch.Tensor:
    """valid[j, t] = 0 ≤ t + direction·j < E for j = 0..w."""
    j = torch.arange(w + 1)[:, None]
    s = torch.arange(n_epochs)[None, :] + direction * j
    return (s >= 0) & (s < n_epochs)


def _to_offset_layout(sides: torch.Tensor, w: int) -> torch.Tensor:
    """(2, w+1, E) memory/transfer sides → (2w+1, E) indexed by offset k + w."""
    return torch.cat([sides[0].flip(0), sides[1][1:]])


# --- literal reference (tests, benchmark) -------------------------------------------------------


@torch.no_grad()
def naive_reference(
    store: CheckpointStore,
    depth: int,
    epochs: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    window: int,
    channels_last: bool = False,
    columns: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """The definitions applied literally: fresh modules per pair, consistency by its own loop over τ.

    `channels_last` runs the modules in that memory format (the engine's format for image models);
    `columns` restricts the work to those deep epochs t (positions), leaving the others NaN.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt) if x.ndim == 4 else x

    def composite_logits(s: int, t: int) -> torch.Tensor:
        shallow = store.model_at(epochs[s]).to(memory_format=fmt)
        deep = store.model_at(epochs[t]).to(memory_format=fmt)
        return deep(shallow(x, 0, depth), depth, None)

    n_epochs = len(epochs)
    shape = (2 * window + 1, n_epochs)
    out = {k: np.full(shape, np.nan) for k in ("accuracy", "cross_entropy", "agreement", "consistency")}
    for t in range(n_epochs) if columns is None else columns:
        reference = composite_logits(t, t).argmax(1)
        for s in range(max(0, t - window), min(n_epochs, t + window + 1)):
            logits = composite_logits(s, t)
            k = s - t + window
            out["accuracy"][k, t] = (logits.argmax(1) == y).double().mean().item()
            out["cross_entropy"][k, t] = F.cross_entropy(logits, y).item()
            out["agreement"][k, t] = (logits.argmax(1) == reference).double().mean().item()
            taus = range(min(s, t), max(s, t) + 1)
            hits = torch.stack([composite_logits(tau, t).argmax(1) == reference for tau in taus]).double()
            out["consistency"][k, t] = hits.mean(0).mean().item()
    return out


# --- the pipeline stage --------------------------------------------------------------------------


def run_composite(
    store: CheckpointStore,
    depth: int,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: int | None,
    stride: int,
    reference_epochs: Sequence[int],
    batch_size: int,
    memory_budget_mb: float,
    precision: str,
    device: str,
    progress: bool,
    strategy: str = "auto",
) -> BandResult:
    """The composite analysis of one run at one depth on one evaluation set."""
    epochs = strided_epochs(store.epochs, stride)
    refs = [min(epochs, key=lambda e: abs(e - r)) for r in reference_epochs] or [epochs[-1]]
    engine = composite_engine(
        None,
        store,
        depth,
        precision,
        epochs=epochs,
        device=device,
        strategy=strategy,
        memory_budget_mb=memory_budget_mb,
    )
    return composite_band(
        engine, epochs, x.to(device), y.to(device), window, sorted(set(refs)), batch_size, None, progress
    )
