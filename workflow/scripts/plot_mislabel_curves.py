"""Figure: ROC and precision-recall curves of every mislabel score of one run (§14)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.mislabel import plot_detection_curves

sm = snakemake  # noqa: F821
log_to(sm.log[0])
run = sm.wildcards.run
curves, table = (pd.read_csv(path, sep="\t") for path in (sm.input.curves, sm.input.table))
figure = plot_detection_curves(
    curves[curves["run"] == run], table[table["run"] == run], sm.params.scores, run
)
save_figure(figure, sm.output[0])
