"""Figure: regression load curves of the noisy and the lazy training (paper 2, SM Fig. S12)."""

from featdyn.io import log_to, read_records
from featdyn.plots import save_figure
from featdyn.plots.regression import plot_regression_load

sm = snakemake  # noqa: F821
log_to(sm.log[0])
save_figure(plot_regression_load(read_records(sm.input.h5)), sm.output[0])
