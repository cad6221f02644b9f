"""Load curves D_l (and He–Su's measure) of one run at its saved epochs, on a train subset and test data."""

import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import analysed_epochs
from featdyn.config import torch_device
from featdyn.data import evaluation_set, read_dataset, tensor_data
from featdyn.io import log_to
from featdyn.separation import run_separation, write_separation

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings, device = sm.params.settings, torch_device(sm.params.device)
store = CheckpointStore(sm.input.checkpoints)
arrays = read_dataset(sm.input.data)
tensors = tensor_data(arrays, device)
eval_sets = {
    name: evaluation_set(tensors, arrays, name, settings.get("train_subset"), sm.params.seed)
    for name in settings["eval_sets"]
}
epochs = analysed_epochs(store, settings.get("stride", 1))
result = run_separation(
    store,
    eval_sets,
    epochs,
    batch_size=settings.get("batch_size", 1024),
    include_output=settings.get("include_output", False),
    device=device,
    progress=sm.params.progress,
)
write_separation(result, epochs, sm.output.h5, {"separation": dict(settings), "run": sm.wildcards.run})
