"""Paper 1 claim by claim: the stages' results read into results/stats/claims.md."""

import pandas as pd

from featdyn.claims import accuracy_table, claims_markdown, paper1_claims
from featdyn.composite_results import memory_window_frame, read_band
from featdyn.dynamics_results import read_drift
from featdyn.h5files import open_h5
from featdyn.io import log_to, write_text

sm = snakemake  # noqa: F821
log_to(sm.log[0])


def read_tsv(path: str) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def optional_tsv(paths: list[str]) -> pd.DataFrame | None:
    """The one table of an optional input, or None where the config does not produce it."""
    return read_tsv(paths[0]) if paths else None


def test_size(path: str) -> int:
    with open_h5(path, ("test/y",)) as f:
        return len(f["test/y"])


bands = [
    ({"run": r, "eval_set": e, "depth": d}, path)
    for (r, e, d), path in zip(sm.params.band_keys, sm.input.bands)
]
continuations: dict[str, dict[int, pd.DataFrame]] = {}
for (run, depth), path in zip(sm.params.freeze_keys, sm.input.freeze):
    continuations.setdefault(run, {})[depth] = read_tsv(path)
claims = paper1_claims(
    memory=memory_window_frame(
        (lab, path) for lab, path in bands if lab["eval_set"] == sm.params.memory_eval_set
    ),
    bands=[(lab, read_band(path)) for lab, path in bands],
    drifts={run: read_drift(path) for run, path in zip(sm.params.drift_runs, sm.input.drift)},
    continuations=continuations,
    test_sizes={run: test_size(path) for run, path in zip(sm.params.intervention_runs, sm.input.data)},
    welch=optional_tsv(sm.input.welch),
    isotropy=optional_tsv(sm.input.isotropy),
    reinit=optional_tsv(sm.input.reinit),
)
metrics = {run: read_tsv(path) for run, path in zip(sm.params.runs, sm.input.metrics)}
text = claims_markdown(accuracy_table(metrics), claims)
write_text(text, sm.output[0])
print(text)
