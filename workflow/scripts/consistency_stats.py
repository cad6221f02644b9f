"""Per-sample consistency of clean vs. noisy runs: values, KDE data, Welch tests and Table 1."""

from featdyn.composite_results import read_band
from featdyn.consistency import consistency_frame, kde_frame, table1_markdown, welch_consistency_table
from featdyn.io import log_to, write_text, write_tsv

sm = snakemake  # noqa: F821
log_to(sm.log[0])
labels = [dict(zip(("pair", "condition", "run", "eval_set", "depth"), key)) for key in sm.params.files]
frame = consistency_frame(zip(labels, map(read_band, sm.input.bands)), sm.params.window)
table = welch_consistency_table(frame)
write_tsv(frame, sm.output.values)
write_tsv(kde_frame(frame), sm.output.kde)
write_tsv(table, sm.output.welch)
write_text(table1_markdown(table, sm.params.window, sm.params.pairs), sm.output.table)
print(table.to_string())
