"""Retrain a run without the samples a score ranks most suspect (`filtered`) or without its truly
mislabelled samples (`oracle`): same initialisation, recipe and seeds (§14)."""

import dataclasses

import pandas as pd
import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.interventions import run_tensors
from featdyn.io import log_to, write_tsv
from featdyn.mislabel import retrain_drop, retrain_without
from featdyn.train import TrainSpec

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
device = torch_device(sm.params.device)
store = CheckpointStore(sm.input.checkpoints)
variant, settings = sm.wildcards.variant, sm.params.settings
dropped = retrain_drop(pd.read_csv(sm.input.scores, sep="\t"), variant, **settings["selection"])
spec = TrainSpec.from_config(sm.params.run, sm.params.recipe)
metrics = retrain_without(
    store,
    run_tensors(store, read_dataset(sm.input.data), device),
    dataclasses.replace(spec, epochs=settings["epochs"], save_every=settings["epochs"]),
    dropped,
    state_dir=sm.params.state_dir,
    out_path=sm.output.checkpoints,
    provenance={
        "run": dict(sm.params.run),
        "recipe": dict(sm.params.recipe),
        "mislabel_retrain": {"variant": variant, **dict(settings)},
    },
    device=device,
    progress=sm.config["progress"],
)
write_tsv(metrics, sm.output.metrics)
print(f"dropped {len(dropped)} samples; final test accuracy {metrics['test_acc'].iloc[-1]:.4f}")
