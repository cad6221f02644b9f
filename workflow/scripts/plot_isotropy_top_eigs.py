"""Figure: top-5 eigenvalue shares of SGD one-step noise across epochs, one run (paper Fig. 15)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.isotropy import top_share_frame
from featdyn.plots import save_figure
from featdyn.plots.isotropy import plot_top_eigs

sm = snakemake  # noqa: F821
log_to(sm.log[0])
table = pd.read_csv(sm.input.table, sep="\t")
shares = top_share_frame(table[table["run"] == sm.wildcards.run])
save_figure(plot_top_eigs(shares, title=sm.wildcards.run, depth_labels=sm.params.labels), sm.output[0])
