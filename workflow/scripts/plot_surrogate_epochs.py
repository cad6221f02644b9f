"""Figure: surrogates of one run over reference epochs, augmented against plain (§12)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.surrogates import plot_surrogates_over_epochs

sm = snakemake  # noqa: F821
log_to(sm.log[0])
table = pd.read_csv(sm.input.table, sep="\t")
table = table[(table["run"] == sm.wildcards.run) & (table["bandwidth"] == sm.params.bandwidth)]
bandwidth = f"σ = {sm.params.bandwidth:g} × median"
title = f"{sm.wildcards.run}: surrogates over training, augmented against plain ({bandwidth})"
save_figure(plot_surrogates_over_epochs(table, title), sm.output[0])
