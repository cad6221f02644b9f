"""Composite analysis of one run at one split depth on one evaluation set."""

import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import run_composite, write_band
from featdyn.config import torch_device
from featdyn.data import evaluation_set, read_dataset, tensor_data
from featdyn.io import log_to

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings, depth, eval_set = sm.params.settings, int(sm.wildcards.depth), sm.wildcards.eval_set
arrays = read_dataset(sm.input.data)
x, y = evaluation_set(
    tensor_data(arrays),
    arrays,
    eval_set,
    settings.get("train_subset"),
    sm.params.seed,
    corrupted_path=sm.input.corrupted or None,
)
result = run_composite(
    CheckpointStore(sm.input.checkpoints),
    depth,
    x,
    y,
    window=settings.get("window"),
    stride=settings.get("stride", 1),
    reference_epochs=settings.get("reference_epochs", []),
    batch_size=settings.get("batch_size", 256),
    memory_budget_mb=settings.get("memory_budget_mb", 1024),
    precision=settings.get("precision", "fp32"),
    device=torch_device(sm.params.device),
    progress=sm.params.progress,
)
provenance = {"composite": dict(settings), "run": sm.wildcards.run, "eval_set": eval_set, "depth": depth}
write_band(result, sm.output.h5, provenance, settings.get("threshold", 0.8))
print(f"peak RSS {result.peak_rss_mb:.0f} MB")
