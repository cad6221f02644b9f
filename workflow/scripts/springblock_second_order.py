"""Phase diagram of the second-order spring–block chain, noise in the force and on the velocity (paper 2,
Figs. S13, S14)."""

from featdyn.io import log_to, write_tsv
from featdyn.springblock import second_order_phase

sm = snakemake  # noqa: F821
log_to(sm.log[0])
frame = second_order_phase(sm.params.settings)
write_tsv(frame, sm.output.tsv)
for noise_on, table in frame.groupby("noise_on", sort=False):
    print(f"noise on the {noise_on}:")
    print(table.pivot_table(index="asymmetry", columns="eps", values="curvature").round(4).to_string())
