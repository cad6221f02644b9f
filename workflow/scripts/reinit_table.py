"""Table: clean accuracy and mCE of each run's final network beside its re-initialised variants (App. F.A)."""

import pandas as pd
import torch

from featdyn.checkpoints import training_provenance
from featdyn.data import normalizer, read_dataset, tensor_data, to_float
from featdyn.device import torch_device
from featdyn.interventions import final_network, load_corrupted_sets, reinit_tables
from featdyn.io import log_to, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
device = torch_device(sm.params.device)
depths, settings = sm.params.depths, sm.params.settings
summaries, details = [], []
for i, run in enumerate(sm.params.runs):
    arrays = read_dataset(sm.input.data[i])
    sets = load_corrupted_sets(sm.input.corrupted[i], *normalizer(to_float(arrays.x_train)), device)
    retrained = sm.input.reinit[i * len(depths) : (i + 1) * len(depths)]
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
