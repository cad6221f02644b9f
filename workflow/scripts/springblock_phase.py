"""Spring–block phase diagram: load-curve curvature over noise ε × friction asymmetry (paper 2, Fig. 3)."""

from featdyn.io import log_to, write_tsv
from featdyn.springblock import phase_diagram, simulation_options

sm = snakemake  # noqa: F821
log_to(sm.log[0])
settings = sm.params.settings
grid = settings["phase"]
frame = phase_diagram(
    grid["eps"],
    grid["asymmetry"],
    mu_r=settings["mu_r"],
    n_chains=grid["n_chains"],
    shared_noise=grid["shared_noise"],
    seed=settings["seed"],
    **simulation_options(settings),
)
write_tsv(frame, sm.output.tsv)
print(frame.pivot_table(index="asymmetry", columns="eps", values="curvature").round(4).to_string())
