"""Keep stages ≤ d of a run's final network (frozen), re-initialise the deeper ones and retrain (App. F.A)."""

import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.interventions import retrain_reinitialised, run_tensors
from featdyn.io import log_to, write_tsv
from featdyn.train import TrainSpec

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
device = torch_device(sm.params.device)
store = CheckpointStore(sm.input.checkpoints, {"run": sm.params.run, "recipe": sm.params.recipe})
depth, settings = int(sm.wildcards.depth), sm.params.settings
metrics = retrain_reinitialised(
    store,
    run_tensors(store, read_dataset(sm.input.data), device),
    TrainSpec.from_config(sm.params.run, sm.params.recipe),
    depth,
    settings["reinit_epochs"],
    settings["reinit_seed"],
    state_dir=sm.params.state_dir,
    out_path=sm.output.checkpoints,
    provenance={
        "run": dict(sm.params.run),
        "recipe": dict(sm.params.recipe),
        "reinit": {**dict(settings), "depth": depth},
    },
    device=device,
    progress=sm.config["progress"],
)
write_tsv(metrics, sm.output.metrics)
