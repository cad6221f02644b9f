"""Figure: spring–block phase diagram and final load curves (paper 2, Fig. 3)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.springblock import plot_springblock_phase

sm = snakemake  # noqa: F821
log_to(sm.log[0])
save_figure(plot_springblock_phase(pd.read_csv(sm.input.tsv, sep="\t")), sm.output[0])
