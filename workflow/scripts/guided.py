"""Guide the shape-keeping CNN by its load curve: Adam to near convergence, then dropout continuations
(paper 2, SM S2, Fig. S2)."""

import torch

from featdyn.data import read_dataset, tensor_data, with_training_subset
from featdyn.device import torch_device
from featdyn.guided import GuidedSettings, guided_runs, guided_table
from featdyn.io import log_to, write_records, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
data = tensor_data(read_dataset(sm.input.data), torch_device(sm.params.device))
data = with_training_subset(data, sm.params.n_train, sm.params.data_seed)
phases = guided_runs(data, GuidedSettings(**sm.params.settings), sm.params.seeds)
provenance = {
    "guided": dict(sm.params.settings),
    "seeds": list(sm.params.seeds),
    "n_train": sm.params.n_train,
    "data_seed": sm.params.data_seed,
}
write_records(sm.output.h5, phases, provenance)
table = guided_table(phases)
write_tsv(table, sm.output.table)
print(table.to_string())
