"""Figure: linear-network load curves beside the μ_r = 0 spring–block chain (paper 2, Fig. 5)."""

import pandas as pd

from featdyn.io import log_to, read_records
from featdyn.plots import save_figure
from featdyn.plots.linear_nets import plot_fig5

sm = snakemake  # noqa: F821
log_to(sm.log[0])
chain = pd.read_csv(sm.input.chain, sep="\t")
save_figure(plot_fig5(read_records(sm.input.linear), chain), sm.output[0])
