"""Train every seed of one phase-diagram cell (noise axis, level, α) and store its load curves."""

import torch

from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.io import log_to
from featdyn.phase import CellSettings, phase_data, run_cell, write_cell

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
settings = CellSettings(**sm.params.settings)
alpha = float(sm.wildcards.alpha)
data = phase_data(read_dataset(sm.input.data), settings, sm.params.data_seed, torch_device(sm.params.device))
result = run_cell(data, settings, alpha, sm.params.seeds, progress=sm.config["progress"])
provenance = {
    "phase": dict(sm.params.settings),
    "variant": sm.wildcards.variant,
    "cell": sm.wildcards.cell,
    "alpha": alpha,
    "seeds": list(sm.params.seeds),
    "data_seed": sm.params.data_seed,
}
write_cell(result, sm.output.h5, provenance)
print(f"curvature {result.curvature}, test accuracy {result.test_acc}")
