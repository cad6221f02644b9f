"""Tables: every surrogate row of every run and depth, and the Spearman ρ of gap against surrogate."""

import pandas as pd

from featdyn.io import log_to, write_tsv
from featdyn.surrogates import surrogate_correlations

sm = snakemake  # noqa: F821
log_to(sm.log[0])
table = pd.concat([pd.read_csv(path, sep="\t") for path in sm.input.tables], ignore_index=True)
write_tsv(table, sm.output.table)
write_tsv(surrogate_correlations(table), sm.output.spearman)
