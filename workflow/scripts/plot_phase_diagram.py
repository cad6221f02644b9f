"""Figures: the noise × nonlinearity phase diagram and test accuracy against curvature (paper 2, Fig. 1)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.separation import plot_accuracy_vs_curvature, plot_phase_diagram

sm = snakemake  # noqa: F821
log_to(sm.log[0])
table = pd.read_csv(sm.input.table, sep="\t")
save_figure(plot_phase_diagram(table), sm.output.diagram)
save_figure(plot_accuracy_vs_curvature(table), sm.output.accuracy)
