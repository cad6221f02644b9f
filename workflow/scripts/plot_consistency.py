"""Figure: consistency densities of a clean vs. noisy pair, one panel per evaluation set (Figs. 7, 16, 17)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.consistency import plot_consistency_kdes

sm = snakemake  # noqa: F821
log_to(sm.log[0])
frame = pd.read_csv(sm.input.values, sep="\t")
frame = frame[(frame["pair"] == sm.wildcards.pair) & (frame["depth"] == sm.params.depth)]
panels = frame.set_index("eval_set").loc[list(sm.params.eval_sets)].reset_index()
save_figure(plot_consistency_kdes(panels, facet="eval_set", title=sm.params.title), sm.output[0])
