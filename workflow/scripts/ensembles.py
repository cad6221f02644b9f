"""Temporal ensembles of one run on its test and corrupted sets (docs/definitions.md §13)."""

import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.ensembles import EnsembleSettings, ensemble_stage
from featdyn.io import log_to, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
table = ensemble_stage(
    CheckpointStore(sm.input.checkpoints),
    read_dataset(sm.input.data),
    sm.params.epoch,
    sm.params.eval_sets,
    EnsembleSettings(**sm.params.settings),
    corrupted_path=sm.input.corrupted[0] if sm.input.corrupted else None,
    device=torch_device(sm.params.device),
)
table.insert(0, "run", sm.wildcards.run)
write_tsv(table, sm.output.table)
print(f"{sm.wildcards.run}: {len(table)} rows, {table['seconds'].iloc[0]:.1f} s")
