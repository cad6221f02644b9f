"""Figure: 2-D feature trajectories over the final classification regions (paper Fig. 6)."""

from featdyn.dynamics_results import read_trajectories
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.dynamics import plot_trajectories

sm = snakemake  # noqa: F821
log_to(sm.log[0])
figure = plot_trajectories(read_trajectories(sm.input.h5), sm.wildcards.run, sm.params.lines, sm.params.seed)
save_figure(figure, sm.output[0])
