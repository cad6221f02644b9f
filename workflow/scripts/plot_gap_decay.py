"""Figure: forgetting (paper Fig. 4) or transferability (Fig. 5) as the epoch gap widens."""

from featdyn.composite_results import read_band
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.composite import plot_gap_decay

sm = snakemake  # noqa: F821
log_to(sm.log[0])
results = {label: read_band(path) for label, path in zip(sm.params.runs.values(), sm.input.bands)}
save_figure(plot_gap_decay(results, side=-1 if sm.wildcards.kind == "forgetting" else 1), sm.output[0])
