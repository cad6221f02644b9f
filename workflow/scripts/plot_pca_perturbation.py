"""Figure: agreement of the final deep part on PCA-perturbed features (paper Fig. 14)."""

from featdyn.dynamics_results import read_pca_perturbation
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.dynamics import plot_pca_perturbation

sm = snakemake  # noqa: F821
log_to(sm.log[0])
figure = plot_pca_perturbation(read_pca_perturbation(sm.input.h5), sm.wildcards.run, seed=sm.params.seed)
save_figure(figure, sm.output[0])
