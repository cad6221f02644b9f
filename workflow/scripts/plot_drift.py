"""Figure: parameter drift per stage and feature drift per depth of several runs (paper Fig. 11)."""

from featdyn.dynamics_results import drift_frames, read_drift
from featdyn.io import log_to
from featdyn.plots import depth_label, save_figure
from featdyn.plots.dynamics import plot_drift

sm = snakemake  # noqa: F821
log_to(sm.log[0])
parameters, features = drift_frames(
    {run: read_drift(path) for run, path in zip(sm.params.runs, sm.input.drift)}
)
labels = sm.params.labels
parameters["stage"] = [depth_label(s, labels[r]) for r, s in zip(parameters["run"], parameters["stage"])]
features["depth"] = [depth_label(d, labels[r]) for r, d in zip(features["run"], features["depth"])]
save_figure(plot_drift(parameters, features), sm.output[0])
