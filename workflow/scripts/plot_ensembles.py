"""Figure: temporal ensembles of one run against the window W (§13)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.ensembles import plot_ensembles

sm = snakemake  # noqa: F821
log_to(sm.log[0])
table = pd.read_csv(sm.input.table, sep="\t")
table = table[table["run"] == sm.wildcards.run]
title = f"{sm.wildcards.run}: temporal ensembles at epoch {int(table['epoch'].iloc[0])}"
save_figure(plot_ensembles(table, title), sm.output[0])
