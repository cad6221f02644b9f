"""Figure: test accuracy of continuations with frozen shallow stages beside the unfrozen one (Fig. 18)."""

import pandas as pd

from featdyn.interventions import freeze_curves
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.dynamics import plot_freeze

sm = snakemake  # noqa: F821
log_to(sm.log[0])
original = pd.read_csv(sm.input.original, sep="\t")
continuations = {d: pd.read_csv(path, sep="\t") for d, path in zip(sm.params.depths, sm.input.continuations)}
curves = freeze_curves(original, continuations, sm.params.labels)
figure = plot_freeze(curves, sm.params.from_epoch, sm.wildcards.run)
save_figure(figure, sm.output[0])
