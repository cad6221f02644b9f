"""2-D feature trajectories of a bottleneck run and the final network's classification regions (Fig. 6)."""

import torch

from featdyn.checkpoints import CheckpointStore, training_provenance
from featdyn.data import read_dataset, tensor_data, training_subset
from featdyn.device import torch_device
from featdyn.dynamics import compute_trajectories, write_trajectories
from featdyn.io import log_to

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings = sm.params.settings
store = CheckpointStore(sm.input.checkpoints, training_provenance(sm.config, sm.wildcards.run))
arrays = read_dataset(sm.input.data)
rows, x = training_subset(tensor_data(arrays), settings["subset"], sm.params.seed)
result = compute_trajectories(
    store,
    x,
    store.labels["train"][rows],
    rows,
    depth=settings["depth"],
    resolution=settings["resolution"],
    batch_size=sm.params.batch_size,
    device=torch_device(sm.params.device),
)
write_trajectories(result, sm.output.h5, {"trajectories": dict(settings), "run": sm.wildcards.run})
n_epochs, n_samples = result.features.shape[:2]
print(f"{n_samples} samples x {n_epochs} epochs; grid agreement {result.grid_agreement:.4f}")
