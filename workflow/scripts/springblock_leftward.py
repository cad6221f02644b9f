"""The spring–block chain with friction for leftward moves only beside paper Eq. 8 (paper 2, Fig. 5b)."""

from featdyn.io import log_to, write_tsv
from featdyn.springblock import leftward_friction_table

sm = snakemake  # noqa: F821
log_to(sm.log[0])
frame = leftward_friction_table(sm.params.settings)
write_tsv(frame, sm.output.tsv)
cells = frame.groupby(["eps", "mu_l"])[["max_error", "curvature_simulated", "curvature_eq8"]].first()
print(cells.to_string())
