"""Figures: train vs test load curves of the cells along one noise axis (paper 2, SM Fig. S4), and the two
separation metrics side by side for those cells and the linear networks (SM Figs. S10, S11)."""

from featdyn.io import log_to, read_records
from featdyn.phase import read_final_curves
from featdyn.plots import save_figure
from featdyn.plots.separation import plot_train_test_load_curves, plot_two_metrics

sm = snakemake  # noqa: F821
log_to(sm.log[0])
keys = sm.params.cell_keys
axis, alpha = keys[0][0], keys[0][2]
frame = read_final_curves(sm.input.cells, keys)
save_figure(plot_train_test_load_curves(frame, axis, alpha), sm.output.train_test)
save_figure(plot_two_metrics(frame, read_records(sm.input.linear), axis, alpha), sm.output.two_metrics)
