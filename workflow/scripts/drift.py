"""Parameter drift per stage and feature drift per depth of one run over its epochs (Fig. 11)."""

import torch

from featdyn.checkpoints import CheckpointStore, training_provenance
from featdyn.data import read_dataset, tensor_data, training_subset
from featdyn.device import torch_device
from featdyn.dynamics import compute_drift, write_drift
from featdyn.io import log_to

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings = sm.params.settings
arrays = read_dataset(sm.input.data)
rows, x = training_subset(tensor_data(arrays), settings["drift_subset"], sm.params.seed)
result = compute_drift(
    CheckpointStore(sm.input.checkpoints, training_provenance(sm.config, sm.wildcards.run)),
    settings["depths"],
    x,
    memory_budget_mb=settings["memory_budget_mb"],
    device=torch_device(sm.params.device),
)
write_drift(result, sm.output.h5, {"drift": dict(settings), "run": sm.wildcards.run})
print(f"parameter drift at the first epoch per stage {result.parameter_drift[0].round(4).tolist()}")
