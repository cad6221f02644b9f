"""Train one run (or resume it after a kill) and write its checkpoint store and metrics table."""

import torch

from featdyn.device import torch_device
from featdyn.io import log_to, write_tsv
from featdyn.train import TrainSpec, train_configured_run

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
spec = TrainSpec.from_config(sm.params.run, sm.params.recipe)
metrics = train_configured_run(
    sm.params.run,
    spec,
    dataset_path=sm.input.data,
    out_path=sm.output.checkpoints,
    state_dir=sm.params.state_dir,
    device=torch_device(sm.params.device),
    provenance={"run": dict(sm.params.run), "recipe": dict(sm.params.recipe)},
    progress=sm.config["progress"],
)
write_tsv(metrics, sm.output.metrics)
