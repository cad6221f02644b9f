"""Composite analysis of one run at one split depth on one evaluation set."""

import torch

from featdyn.checkpoints import CheckpointStore, training_provenance
from featdyn.composite import run_composite
from featdyn.composite_results import write_band
from featdyn.data import evaluation_set, read_dataset, tensor_data
from featdyn.device import torch_device
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
    settings["train_subset"],
    sm.params.seed,
    corrupted_path=sm.input.corrupted or None,
)
result = run_composite(
    CheckpointStore(sm.input.checkpoints, training_provenance(sm.config, sm.wildcards.run)),
    depth,
    x,
    y,
    window=settings["window"],
    stride=settings["stride"],
    reference_epochs=settings["reference_epochs"],
    batch_size=settings["batch_size"],
    memory_budget_mb=settings["memory_budget_mb"],
    precision=settings["precision"],
    strategy=settings["strategy"],
    device=torch_device(sm.params.device),
    progress=sm.config["progress"],
)
provenance = {"composite": dict(settings), "run": sm.wildcards.run, "eval_set": eval_set, "depth": depth}
write_band(result, sm.output.h5, provenance, settings["threshold"])
print(f"peak RSS {result.peak_rss_mb:.0f} MB")
