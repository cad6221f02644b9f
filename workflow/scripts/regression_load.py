"""Regression load curves of the BN MLP on a seeded smooth target, one per configured training (paper 2,
SM S5, Fig. S12)."""

import pandas as pd
import torch

from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.io import log_to, write_records, write_tsv
from featdyn.regression_load import RegressionSettings, regression_data, train_regression

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
arrays = read_dataset(sm.input.data)
data = regression_data(
    arrays, sm.params.n_train, sm.params.data_seed, sm.params.target, torch_device(sm.params.device)
)
results = {
    name: train_regression(
        data.x_train, data.y_train, data.x_test, data.y_test, RegressionSettings(**settings), sm.params.seed
    )
    for name, settings in sm.params.trainings.items()
}
provenance = {
    "trainings": dict(sm.params.trainings),
    "target": dict(sm.params.target),
    "n_train": sm.params.n_train,
    "seed": sm.params.seed,
    "data_seed": sm.params.data_seed,
}
write_records(sm.output.h5, results, provenance)
table = pd.DataFrame(
    [
        {"training": name, "curvature": r.curvature, "train_rmse": r.train_rmse, "test_rmse": r.test_rmse}
        | {f"R_{layer}": value for layer, value in enumerate(r.train_load[-1])}
        for name, r in results.items()
    ]
)
write_tsv(table, sm.output.table)
print(table.to_string())
