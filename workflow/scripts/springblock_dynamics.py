"""Load curves of spring–block chains with shared noise over simulation steps (paper 2, Fig. 4 right)."""

from featdyn.io import log_to
from featdyn.springblock import dynamics_cases, write_dynamics

sm = snakemake  # noqa: F821
log_to(sm.log[0])
write_dynamics(dynamics_cases(sm.params.settings), sm.output.h5, {"springblock": dict(sm.params.settings)})
