"""Figure: final training and test load curves of the cells along one noise axis (paper 2, SM Fig. S4)."""

from featdyn.io import log_to
from featdyn.phase import read_final_curves
from featdyn.plots import save_figure
from featdyn.plots.separation import plot_train_test_load_curves

sm = snakemake  # noqa: F821
log_to(sm.log[0])
keys = sm.params.cell_keys
frame = read_final_curves(sm.input.cells, keys)
save_figure(plot_train_test_load_curves(frame, keys[0][0], keys[0][2]), sm.output[0])
