"""Figure: parameter drift per stage and feature drift per depth of several runs (paper Fig. 11)."""

from featdyn.dynamics_results import drift_frames, read_drift
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.dynamics import plot_drift

sm = snakemake  # noqa: F821
log_to(sm.log[0])
parameters, features = drift_frames(
    {run: read_drift(path) for run, path in zip(sm.params.runs, sm.input.drift)}
)
save_figure(plot_drift(parameters, features), sm.output[0])
