"""AUROC and average precision of every score of every scored run, with bootstrap intervals, and the
ROC / precision-recall points of the figures (§14)."""

import pandas as pd

from featdyn.io import log_to, write_tsv
from featdyn.mislabel import evaluate_runs

sm = snakemake  # noqa: F821
log_to(sm.log[0])
settings = sm.params.settings
tables = {run: pd.read_csv(path, sep="\t") for run, path in zip(sm.params.runs, sm.input.scores, strict=True)}
table, curves = evaluate_runs(
    tables, sm.params.noise, settings["n_boot"], settings["seed"], settings["level"]
)
write_tsv(table, sm.output.table)
write_tsv(curves, sm.output.curves)
print(table.to_string(index=False))
