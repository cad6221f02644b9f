"""Figure: training curves of every run (paper Fig. 19)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.training import plot_training_curves

sm = snakemake  # noqa: F821
log_to(sm.log[0])
frames = [pd.read_csv(path, sep="\t").assign(run=run) for run, path in zip(sm.params.runs, sm.input.metrics)]
save_figure(plot_training_curves(pd.concat(frames, ignore_index=True)), sm.output[0])
