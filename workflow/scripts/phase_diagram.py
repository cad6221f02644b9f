"""Aggregate the phase-diagram cells: one row per seed, and cell means (paper 2, Fig. 1)."""

import pandas as pd

from featdyn.io import log_to, write_tsv
from featdyn.phase import aggregate_cells, cell_table, read_cell

sm = snakemake  # noqa: F821
log_to(sm.log[0])
per_seed = pd.concat(
    [cell_table(read_cell(path)[0], *key) for key, path in zip(sm.params.cell_keys, sm.input.cells)],
    ignore_index=True,
)
table = aggregate_cells(per_seed, sm.params.tolerance)
write_tsv(per_seed, sm.output.seeds)
write_tsv(table, sm.output.table)
print(table.to_string())
