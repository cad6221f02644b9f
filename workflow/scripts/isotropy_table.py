"""Table: every isotropy statistic and p-value, one row per run, epoch and depth."""

import pandas as pd

from featdyn.io import log_to, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
table = pd.concat([pd.read_csv(path, sep="\t") for path in sm.input.rows], ignore_index=True)
write_tsv(table.sort_values(["run", "depth", "epoch"]), sm.output.table)
