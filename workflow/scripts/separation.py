"""Load curves D_l (and He–Su's measure) of one run at its saved epochs, on a train subset and test data."""

import torch

from featdyn.checkpoints import CheckpointStore, strided_epochs, training_provenance
from featdyn.data import evaluation_set, read_dataset, tensor_data
from featdyn.device import torch_device
from featdyn.io import log_to
from featdyn.separation import run_separation, write_separation

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings, device = sm.params.settings, torch_device(sm.params.device)
store = CheckpointStore(sm.input.checkpoints, training_provenance(sm.config, sm.wildcards.run))
arrays = read_dataset(sm.input.data)
tensors = tensor_data(arrays, device)
eval_sets = {
    name: evaluation_set(tensors, arrays, name, settings["train_subset"], sm.params.seed)
    for name in settings["eval_sets"]
}
epochs = strided_epochs(store.epochs, settings["stride"])
result = run_separation(
    store,
    eval_sets,
    epochs,
    batch_size=settings["batch_size"],
    include_output=settings["include_output"],
    device=device,
    progress=sm.config["progress"],
)
write_separation(result, epochs, sm.output.h5, {"separation": dict(settings), "run": sm.wildcards.run})
