"""Figure: load curves and test accuracy of each phase of the guided CNN (paper 2, SM Fig. S2)."""

from featdyn.io import log_to, read_records
from featdyn.plots import save_figure
from featdyn.plots.guided import plot_guided

sm = snakemake  # noqa: F821
log_to(sm.log[0])
save_figure(plot_guided(read_records(sm.input.h5)), sm.output[0])
