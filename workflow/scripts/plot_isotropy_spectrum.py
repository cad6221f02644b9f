"""Figure: covariance spectrum of SGD one-step noise against an isotropic cloud (paper Fig. 8)."""

from featdyn.io import log_to
from featdyn.isotropy import read_isotropy
from featdyn.plots import save_figure
from featdyn.plots.isotropy import plot_spectra

sm = snakemake  # noqa: F821
log_to(sm.log[0])
results = [{**read_isotropy(path), "run": run} for run, path in zip(sm.params.runs, sm.input.results)]
save_figure(plot_spectra(results, sm.params.labels), sm.output[0])
