"""Import one run's outside checkpoints into its checkpoint store and metrics table."""

import torch

from featdyn.device import torch_device
from featdyn.importing import import_configured_run
from featdyn.io import log_to, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
metrics = import_configured_run(
    sm.params.run,
    sm.params.recipe,
    dataset_path=sm.input.data,
    out_path=sm.output.checkpoints,
    device=torch_device(sm.params.device),
    provenance={"run": dict(sm.params.run), "recipe": sm.params.recipe},
    progress=sm.config["progress"],
)
write_tsv(metrics, sm.output.metrics)
