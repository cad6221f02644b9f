"""PCA perturbation of one run's features at one depth, classified by the final deep part (Fig. 14)."""

import torch

from featdyn.checkpoints import CheckpointStore, training_provenance
from featdyn.data import read_dataset, tensor_data, training_subset
from featdyn.device import torch_device
from featdyn.dynamics import pca_perturbation, write_pca_perturbation
from featdyn.io import log_to

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings = sm.params.settings
store = CheckpointStore(sm.input.checkpoints, training_provenance(sm.config, sm.wildcards.run))
arrays = read_dataset(sm.input.data)
rows, x = training_subset(tensor_data(arrays), settings["subset"], sm.params.seed)
result = pca_perturbation(
    store,
    x,
    torch.as_tensor(store.labels["train"][rows]),
    int(sm.wildcards.depth),
    settings["magnitudes"],
    reference_epoch=settings["reference_epoch"],
    history=settings["history"],
    scale=settings["scale"],
    draws=settings["draws"],
    figure_magnitude=settings["figure_magnitude"],
    resolution=settings["resolution"],
    seed=sm.params.seed,
    batch_size=sm.params.batch_size,
    device=torch_device(sm.params.device),
)
provenance = {"pca": dict(settings), "run": sm.wildcards.run, "depth": int(sm.wildcards.depth)}
write_pca_perturbation(result, sm.output.h5, provenance)
print(f"PC std {result.pc_std}; mean agreement per magnitude {result.agreement.mean(1).round(4).tolist()}")
