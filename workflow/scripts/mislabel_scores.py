"""Per-sample training-dynamics scores of one run's training samples, against its given labels (§14)."""

import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.data import read_dataset, tensor_data
from featdyn.device import torch_device
from featdyn.io import log_to, write_tsv
from featdyn.mislabel import ScoreSettings, score_run

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
device = torch_device(sm.params.device)
store = CheckpointStore(sm.input.checkpoints)
table = score_run(
    store, tensor_data(read_dataset(sm.input.data), device), ScoreSettings(**sm.params.settings), device
)
write_tsv(table, sm.output.table)
print(f"{len(table)} samples, {int(table['mislabelled'].sum())} mislabelled, {len(table.columns) - 5} scores")
