"""Figure: effective rank of SGD one-step noise beside the memory window of the same run."""

import pandas as pd

from featdyn.composite_results import memory_window_frame
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.isotropy import plot_anisotropy_vs_memory

sm = snakemake  # noqa: F821
log_to(sm.log[0])
run = sm.wildcards.run
table = pd.read_csv(sm.input.table, sep="\t")
memory = memory_window_frame(({"depth": d}, path) for d, path in zip(sm.params.memory_depths, sm.input.bands))
title = f"{run}: SGD-noise anisotropy and memory window ({sm.params.eval_set} set)"
figure = plot_anisotropy_vs_memory(table[table["run"] == run], memory, title, depth_labels=sm.params.labels)
save_figure(figure, sm.output[0])
