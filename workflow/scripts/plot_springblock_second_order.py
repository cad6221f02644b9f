"""Figure: the second-order chain's phase diagrams beside the first-order one (paper 2, Figs. 3, S13, S14)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.springblock import plot_springblock_orders

TITLES = {
    "force": "Second order, noise in the force (Eq. 4; Fig. S13)",
    "velocity": "Second order, Langevin (Eq. 12; Fig. S14)",
}

sm = snakemake  # noqa: F821
log_to(sm.log[0])
second = pd.read_csv(sm.input.second, sep="\t")
panels = {"First order (Eq. 5; Fig. 3)": pd.read_csv(sm.input.first, sep="\t")}
panels |= {TITLES[noise_on]: table for noise_on, table in second.groupby("noise_on", sort=False)}
save_figure(plot_springblock_orders(panels), sm.output[0])
