"""Figure: load curves of one run over its saved epochs and their curvature (paper 2, Eq. 3 and Fig. 4)."""

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.separation import plot_run_separation
from featdyn.separation_results import read_separation

sm = snakemake  # noqa: F821
log_to(sm.log[0])
curves, bends = read_separation(sm.input.h5)
save_figure(plot_run_separation(curves, bends, sm.wildcards.run, sm.params.labels), sm.output[0])
