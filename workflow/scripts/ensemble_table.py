"""Table: accuracy, cross-entropy and ECE of every temporal ensemble of every run (§13)."""

import pandas as pd

from featdyn.io import log_to, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
write_tsv(
    pd.concat([pd.read_csv(path, sep="\t") for path in sm.input.tables], ignore_index=True), sm.output.table
)
