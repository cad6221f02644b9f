"""Figure: the two separation metrics side by side, BN MLP cells and linear networks (paper 2, SM Figs.
S10, S11)."""

from featdyn.io import log_to, read_records
from featdyn.phase import read_final_curves
from featdyn.plots import save_figure
from featdyn.plots.separation import plot_two_metrics

sm = snakemake  # noqa: F821
log_to(sm.log[0])
keys = sm.params.cell_keys
frame = read_final_curves(sm.input.cells, keys)
save_figure(plot_two_metrics(frame, read_records(sm.input.linear), keys[0][0], keys[0][2]), sm.output[0])
