"""Figure: memory window W(t) against t for every run, depth and evaluation set (paper Fig. 3)."""

import pandas as pd

from featdyn.composite import read_memory_window
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.composite import plot_memory_window

sm = snakemake  # noqa: F821
log_to(sm.log[0])
frames = []
for (run, eval_set, depth), path in zip(sm.params.band_keys, sm.input.bands):
    epochs, window = read_memory_window(path)
    frames.append(
        pd.DataFrame({"run": run, "eval_set": eval_set, "depth": depth, "epoch": epochs, "window": window})
    )
save_figure(plot_memory_window(pd.concat(frames), sm.params.threshold), sm.output[0])
