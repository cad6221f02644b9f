"""One-step SGD perturbations of features at a checkpoint (docs/definitions.md §4; paper 1, Sec. 6).

`one_step_perturbations` measures Δh_m(x) = h_{θ'_m}(x) − h_{θ_t}(x) for θ'_m = θ_t − η ∇L_{B_m}(θ_t) on M
seeded mini-batches (one batched backward pass each, then the M stepped shallow parts in a vmap over
stacked parameters). `isotropy_at_checkpoint` is the pipeline stage: one run's checkpoint at one epoch
and one split depth, with the run's own learning rate, batch size and training labels, summarised by
`featdyn.isotropy.perturbation_stats`; `write_isotropy` stores it.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from featdyn.backoff import Backoff
from featdyn.checkpoints import CheckpointStore
from featdyn.data import Arrays, subset_indices, tensor_data
from featdyn.io import atomic_h5, save_arrays
from featdyn.isotropy import (
    ARRAY_KEYS,
    TOP_K,
    isotropic_null,
    isotropic_reference_spectrum,
    perturbation_stats,
)
from featdyn.isotropy import read_isotropy as read_isotropy  # re-exported; figure jobs use featdyn.isotropy
from featdyn.reduction import Reduce, feature_reducer


def minibatch_indices(n: int, batch_size: int, M: int, seed: int) -> np.ndarray:
    """(M, batch_size) training indices: M independent mini-batches drawn without replacement."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training samples")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n, size=batch_size, replace=False) for _ in range(M)])


def without_running_stats(net: nn.Module) -> nn.Module:
    """Make every BatchNorm of `net` use batch statistics only, so no gradient step writes a buffer."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
    return net


def param_requires_grad(model: nn.Module, sequential_name: str) -> bool:
    """Whether the model parameter named `i.rest` inside `nn.Sequential(*model.stages)` is trainable."""
    return model.stages.get_parameter(sequential_name).requires_grad


def minibatch_gradients(
    net: nn.Module,
    params: Mapping[str, torch.Tensor],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    indices: np.ndarray,
) -> dict[str, torch.Tensor]:
    """Cross-entropy gradients of `params` (a subset of `net`'s parameters) on each mini-batch.

    One batched forward and backward pass per mini-batch (row of `indices`), in `net`'s current mode;
    returns every gradient stacked on a leading mini-batch axis.
    """
    names, tensors = list(params), list(params.values())
    device = tensors[0].device
    rows = []
    for batch in torch.as_tensor(indices, device=train_x.device):
        xb = train_x[batch].to(device=device, dtype=tensors[0].dtype)
        loss = F.cross_entropy(net(xb), train_y[batch].to(device=device, dtype=torch.long))
        rows.append(torch.autograd.grad(loss, tensors))
    return {name: torch.stack([row[i] for row in rows]) for i, name in enumerate(names)}


def one_step_perturbations(
    model: nn.Module,
    depth: int,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    probe_x: torch.Tensor,
    lr: float,
    batch_size: int,
    M: int = 200,
    seed: int = 0,
    reduce: Reduce = "gap",
    p_max: int = 512,
    projection_seed: int = 0,
    chunk_size: int = 50,
    dtype: torch.dtype = torch.float64,
    grad_dtype: torch.dtype | None = None,
    vmapped: bool | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Feature perturbations Δh_m of one plain SGD step on each of M seeded mini-batches.

    From the model's current weights θ_t: θ'_m = θ_t − lr ∇L_{B_m}(θ_t) (cross-entropy, no momentum,
    no weight decay; only trainable parameters move, and only the shallow ones matter for h). The
    gradient is taken with BatchNorm on batch statistics and Dropout active, with an independent
    seeded mask per mini-batch; running statistics are never written. Δh_m = h_{θ'_m}(probe_x) −
    h_{θ_t}(probe_x) for h = stages[:depth] in eval mode (running statistics, no dropout), reduced by
    `feature_reducer`. The paper fixes one probe sample; several are concatenated probe-major.

    Works on copies in `dtype` (float64 by default, so that the difference of two forward passes is
    not rounding noise); the model itself, its buffers, mode and the global RNG state are untouched.
    The gradients may be taken in a cheaper `grad_dtype` (default: `dtype`): they are cast to `dtype`
    before the step, so only the step's direction carries that precision, not the feature difference.
    Each gradient is one batched backward pass (`minibatch_gradients`; torch.func.grad would import
    torch._dynamo, seconds per process, for no speed-up). The M stepped shallow parts run one
    `functional_call` each on CPUs (exactly the stepped network's forward pass, and faster there than
    vmap) and with vmap over stacked parameters elsewhere (`vmapped` overrides the choice),
    `chunk_size` at a time; the chunk halves on a device out-of-memory error (vmap lanes of a smaller
    chunk round the last bits differently; the loop's results do not change).
    Returns delta (M, p) float64 and an info dict (reduction, p, seeds, indices, ...).
    """
    n_stages = len(model.stages)
    if not 1 <= depth < n_stages:
        raise ValueError(f"split depth {depth} is not in 1..{n_stages - 1}")
    device = next(model.parameters()).device
    grad_dtype = grad_dtype or dtype
    vmapped = device.type != "cpu" if vmapped is None else vmapped
    grad_net = without_running_stats(copy.deepcopy(nn.Sequential(*model.stages))).to(grad_dtype).train()
    shallow_net = copy.deepcopy(nn.Sequential(*model.stages[:depth])).to(dtype).eval()
    shallow_params = {name: param.detach() for name, param in shallow_net.named_parameters()}
    trainable = [name for name in shallow_params if param_requires_grad(model, name)]
    shallow_buffers = dict(shallow_net.named_buffers())
    probe = probe_x.to(device=device, dtype=dtype)

    def features(stepped: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(shallow_net, {**shallow_params, **stepped, **shallow_buffers}, (probe,))

    indices = minibatch_indices(len(train_x), batch_size, M, seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        grads = minibatch_gradients(
            grad_net, {name: grad_net.get_parameter(name) for name in trainable}, train_x, train_y, indices
        )
    with torch.no_grad():
        reference = shallow_net(probe)
        reducer, info = feature_reducer(
            tuple(reference.shape[1:]), len(probe), reduce, p_max, projection_seed
        )
        chunk = Backoff(
            "isotropy: stepped shallow parts per call",
            chunk_size,
            effect="results change in the last bits" if vmapped else "results are unchanged",
        )
        chunks: list[torch.Tensor] = []
        while (start := sum(len(c) for c in chunks)) < M:

            def stepped_features(size: int, start: int = start) -> torch.Tensor:
                stepped = {
                    name: shallow_params[name] - lr * grads[name][start : start + size].to(dtype)
                    for name in trainable
                }
                if vmapped:
                    moved = vmap(features)(stepped)
                else:
                    n = len(next(iter(stepped.values())))
                    moved = torch.stack([features({k: v[i] for k, v in stepped.items()}) for i in range(n)])
                return torch.cat([reducer(row[None]) for row in moved - reference])

            chunks.append(chunk.run(stepped_features).cpu())
    delta = torch.cat(chunks).numpy().astype(np.float64)
    info.update(
        M=M,
        depth=depth,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        dtype=str(dtype),
        grad_dtype=str(grad_dtype),
        n_probe=len(probe),
    )
    info["batch_indices"] = indices
    return delta, info


PRECISIONS = {"fp32": torch.float32, "fp64": torch.float64}


@dataclass(frozen=True)
class IsotropySettings:
    """The keys of config section `isotropy` one checkpoint's job reads; defaults are the schema's."""

    M: int = 200
    n_probe: int = 8
    reduce: Reduce = "gap"
    p_max: int = 128
    B: int = 2000
    seed: int = 0
    chunk_size: int = 50
    grad_precision: str = "fp32"


def learning_rate_at(store: CheckpointStore, epoch: int) -> float:
    """The run's learning rate at `epoch`: the `lr` column of the store's metrics (an imported run has
    one when its config names the recipe it was trained with)."""
    rows = store.metrics.loc[store.metrics["epoch"] == epoch, "lr"]
    if rows.empty:
        raise KeyError(f"no metrics row for epoch {epoch} in {store.path}")
    lr = float(rows.iloc[0])
    if not np.isfinite(lr):
        raise ValueError(
            f"{store.path} has no learning rate at epoch {epoch} (imported from {store.imported_from}): "
            "give the run the `recipe` it was trained with, so that the SGD steps use its learning rate"
        )
    return lr


def minibatch_seed(seed: int, epoch: int) -> int:
    """Seed of the M mini-batches at `epoch`: shared by every depth, different for every epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def isotropy_at_checkpoint(
    store: CheckpointStore,
    arrays: Arrays,
    epoch: int,
    depth: int,
    batch_size: int,
    settings: IsotropySettings,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """One-step perturbations of a run's checkpoint at `epoch`, split depth `depth`, and their statistics.

    The gradient uses the run's own training labels (noisy ones for a noisy-label run), its learning
    rate at `epoch` and `batch_size`; the probe inputs are a seeded subset of `n_probe` training samples.
    Returns the `perturbation_stats` of the M perturbations with the bootstrap p-value (null cached
    under `cache_dir`), the isotropic reference spectrum of equal total variance, the perturbations,
    and what made them (epoch, depth, lr, seeds, reduction, seconds).
    """
    start = time.perf_counter()
    data = tensor_data(arrays, device, train_labels=store.labels["train"])
    probe_indices = subset_indices(len(data.y_train), settings.n_probe, settings.seed)
    lr = learning_rate_at(store, epoch)
    batches_seed = minibatch_seed(settings.seed, epoch)
    delta, info = one_step_perturbations(
        store.model_at(epoch, device),
        depth,
        data.x_train,
        data.y_train,
        data.x_train[torch.from_numpy(probe_indices).to(data.x_train.device)],
        lr=lr,
        batch_size=batch_size,
        M=settings.M,
        seed=batches_seed,
        reduce=settings.reduce,
        p_max=settings.p_max,
        projection_seed=settings.seed,
        chunk_size=settings.chunk_size,
        grad_dtype=PRECISIONS[settings.grad_precision],
    )
    null = isotropic_null(settings.M, info["p"], settings.B, settings.seed, cache_dir)
    result = perturbation_stats(delta, null)
    result.update(
        isotropic_eigenvalues=isotropic_reference_spectrum(
            settings.M, info["p"], result["total_variance"], settings.seed
        ),
        delta=delta,
        probe_indices=probe_indices,
        epoch=epoch,
        depth=depth,
        lr=lr,
        batch_size=batch_size,
        B=settings.B,
        null_T_mean=float(null.mean()),
        null_T_q95=float(np.quantile(null, 0.95)),
        minibatch_seed=batches_seed,
        n_probe=len(probe_indices),
        reduce=info["reduce"],
        pooled=info["pooled"],
        projected=info["projected"],
        raw_dim=info["raw_dim"],
        features_per_probe=info["features_per_probe"],
        projection_seed=info["projection_seed"],
        grad_dtype=info["grad_dtype"],
        dtype=info["dtype"],
        seconds=time.perf_counter() - start,
    )
    return result


def write_isotropy(result: Mapping[str, Any], path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    """One HDF5 file: the arrays of `ARRAY_KEYS` as datasets, every scalar as an attribute."""
    with atomic_h5(path, provenance) as f:
        save_arrays(f, {key: result[key] for key in ARRAY_KEYS})
        f.attrs.update({key: value for key, value in result.items() if key not in ARRAY_KEYS})


def isotropy_row(result: Mapping[str, Any], run: str) -> dict[str, Any]:
    """One table row: the run, every scalar statistic and p-value, and the top-5 eigenvalue shares."""
    scalars = {
        k: v for k, v in result.items() if k not in ARRAY_KEYS and k not in ("config", "featdyn_version")
    }
    shares = np.full(TOP_K, np.nan)
    shares[: len(result["top_shares"])] = result["top_shares"]
    return {"run": run, **scalars, **{f"top_share_{i + 1}": share for i, share in enumerate(shares)}}
