"""Figure: test accuracy of a run beside its retrains without suspect or mislabelled samples (§14)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.mislabel import plot_retrain

sm = snakemake  # noqa: F821
log_to(sm.log[0])
run = sm.wildcards.run
table = pd.read_csv(sm.input.table, sep="\t")
curves = {
    "original": pd.read_csv(sm.input.original, sep="\t"),
    **{
        v: pd.read_csv(path, sep="\t") for v, path in zip(sm.params.variants, sm.input.retrained, strict=True)
    },
}
save_figure(plot_retrain(curves, table[table["run"] == run], run), sm.output[0])
