"""Table: clean accuracy and mCE of each run's final network beside its re-initialised variants (App. F.A)."""

import pandas as pd
import torch

from featdyn.checkpoints import training_provenance
from featdyn.data import input_normalizer, read_dataset, tensor_data
from featdyn.device import torch_device
from featdyn.interventions import final_network, load_corrupted_sets, reinit_tables
from featdyn.io import log_to, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
device = torch_device(sm.params.device)
settings = sm.params.settings
summaries, details, start = [], [], 0
for i, (run, depths) in enumerate(zip(sm.params.runs, sm.params.depths)):
    arrays = read_dataset(sm.input.data[i])
    sets = load_corrupted_sets(sm.input.corrupted[i], *input_normalizer(arrays), device)
    retrained, start = sm.input.reinit[start : start + len(depths)], start + len(depths)
    trained = training_provenance(sm.config, run)
    summary, errors = reinit_tables(
        run,
        final_network(sm.input.baselines[i], device, trained),
        {d: final_network(path, device, trained) for d, path in zip(depths, retrained)},
        settings["reinit_epochs"],
        tensor_data(arrays, device),
        sets,
        settings["batch_size"],
    )
    summaries.append(summary)
    details.append(errors)
summary = pd.concat(summaries, ignore_index=True)
write_tsv(summary, sm.output.table)
write_tsv(pd.concat(details, ignore_index=True), sm.output.errors)
print(summary.to_string(index=False))
