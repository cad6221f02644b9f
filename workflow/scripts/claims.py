"""Paper 1 claim by claim: the stages' results read into results/stats/claims.md."""

import pandas as pd

from featdyn.claims import accuracy_table, claims_markdown, paper1_claims
from featdyn.composite_results import memory_window_frame, read_band
from featdyn.dynamics_results import read_drift
from featdyn.h5files import open_h5
from featdyn.io import log_to, write_text

sm = snakemake  # noqa: F821
log_to(sm.log[0])


def read_tsv(paths: list[str]) -> pd.DataFrame | None:
    """The one table of an optional input, or None where the config does not produce it."""
    return pd.read_csv(paths[0], sep="\t") if paths else None


def labelled(keys: list, paths: list) -> list[tuple[dict, str]]:
    return [({"run": r, "eval_set": e, "depth": d}, path) for (r, e, d), path in zip(keys, paths)]


continuations: dict[str, dict[int, pd.DataFrame]] = {}
for (run, depth), path in zip(sm.params.freeze_keys, sm.input.freeze):
    continuations.setdefault(run, {})[depth] = read_tsv([path])
test_sizes = {}
for run, path in zip(sm.params.intervention_runs, sm.input.data):
    with open_h5(path, ("test/y",)) as f:
        test_sizes[run] = len(f["test/y"])
claims = paper1_claims(
    memory=memory_window_frame(labelled(sm.params.memory_keys, sm.input.memory)),
    bands=[(lab, read_band(path)) for lab, path in labelled(sm.params.band_keys, sm.input.bands)],
    drifts={run: read_drift(path) for run, path in zip(sm.params.drift_runs, sm.input.drift)},
    continuations=continuations,
    test_sizes=test_sizes,
    welch=read_tsv(sm.input.welch),
    isotropy=read_tsv(sm.input.isotropy),
    reinit=read_tsv(sm.input.reinit),
)
metrics = {run: read_tsv([path]) for run, path in zip(sm.params.runs, sm.input.metrics)}
text = claims_markdown(accuracy_table(metrics), claims)
write_text(text, sm.output[0])
print(text)
