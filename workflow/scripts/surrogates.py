"""Generalization surrogates of one run at one split depth (docs/definitions.md §12)."""

import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.io import log_to, write_tsv
from featdyn.surrogates import SurrogateSettings, surrogate_stage

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
run, depth = sm.wildcards.run, int(sm.wildcards.depth)
table = surrogate_stage(
    CheckpointStore(sm.input.checkpoints),
    read_dataset(sm.input.data),
    depth,
    sm.params.epochs,
    sm.params.windows,
    SurrogateSettings.from_config(sm.params.settings),
    torch_device(sm.params.device),
)
table.insert(0, "run", run)
write_tsv(table, sm.output.table)
print(f"{run} depth {depth}: {len(table)} rows, {table['seconds'].iloc[0]:.1f} s")
