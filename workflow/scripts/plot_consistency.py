"""Figure: consistency densities of a clean vs. noisy pair, one panel per evaluation set (Figs. 7, 16, 17)."""

from featdyn.composite_results import read_band
from featdyn.consistency import consistency_frame
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.consistency import plot_consistency_kdes

sm = snakemake  # noqa: F821
log_to(sm.log[0])
labels = [dict(zip(("pair", "condition", "run", "eval_set", "depth"), key)) for key in sm.params.files]
frame = consistency_frame(zip(labels, map(read_band, sm.input.bands)), sm.params.window)
save_figure(plot_consistency_kdes(frame, facet="eval_set", title=sm.params.title), sm.output[0])
