"""Table: test accuracy of each retrained run beside its filtered and oracle retrains (§14)."""

import pandas as pd

from featdyn.checkpoints import CheckpointStore
from featdyn.io import log_to, write_tsv
from featdyn.mislabel import RETRAIN_VARIANTS, retrain_table

sm = snakemake  # noqa: F821
log_to(sm.log[0])
n = len(RETRAIN_VARIANTS)
tables = [
    retrain_table(
        run,
        CheckpointStore(sm.input.originals[i]),
        dict(
            zip(RETRAIN_VARIANTS, map(CheckpointStore, sm.input.retrained[i * n : (i + 1) * n]), strict=True)
        ),
        sm.params.score,
    )
    for i, run in enumerate(sm.params.runs)
]
table = pd.concat(tables, ignore_index=True)
write_tsv(table, sm.output.table)
print(table.to_string(index=False))
