"""Opening the pipeline's HDF5 inputs: every reader goes through `open_h5`.

A file that cannot serve as the input it should be (missing, empty, not HDF5, truncated by a full
disk or an interrupted copy, written in another featdyn layout, lacking a dataset, or written for a
config other than the one the job runs with) raises `UnusableInputError`, whose message names the
file, says what is wrong and which rule rebuilds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py

from featdyn import __version__

PRODUCERS: tuple[tuple[str, str], ...] = (
    ("results/data/{dataset}-c.h5", "corrupt"),
    ("results/data/{dataset}.h5", "download"),
    ("results/runs/{run}/mislabel/{variant}/checkpoints.h5", "mislabel_retrain"),
    ("results/runs/{run}/checkpoints.h5", "train"),
    ("results/runs/{run}/checkpoints.h5", "import_run"),
    ("results/runs/{run}/continue/freeze_d{depth}/checkpoints.h5", "continue_frozen"),
    ("results/runs/{run}/continue/reinit_d{depth}/checkpoints.h5", "continue_reinit"),
    ("results/runs/{run}/composite/{eval_set}_d{depth}.h5", "composite"),
    ("results/runs/{run}/dynamics/trajectories.h5", "trajectories"),
    ("results/runs/{run}/dynamics/pca_d{depth}.h5", "pca_perturbation"),
    ("results/runs/{run}/dynamics/drift.h5", "drift"),
    ("results/runs/{run}/isotropy/e{epoch}_d{depth}.h5", "isotropy"),
    ("results/runs/{run}/separation.h5", "separation"),
    ("results/phase/cells{variant}/{cell}_a{alpha}.h5", "phase_cell"),
    ("results/linear_nets/linear_nets.h5", "linear_nets"),
    ("results/guided/guided.h5", "guided"),
    ("results/regression/regression_load.h5", "regression_load"),
    ("results/springblock/dynamics.h5", "springblock_dynamics"),
)
"""(output pattern, rule) of every HDF5 file the workflow writes, the more specific pattern first."""

MAX_LISTED_DIFFERENCES = 5
_ABSENT = object()  # a key one config tree has and the other lacks


class UnusableInputError(RuntimeError):
    """An input file that cannot be used as it is; the message says why and how to rebuild it."""

    def __init__(self, path: str | os.PathLike, problem: str, *, missing: bool = False):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"`{self.path}` {problem}. {remedy(self.path, missing=missing)}")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", pattern)
    body = "".join("[^/]*" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(f"(?:^|/){body}$")


_PRODUCER_REGEXES = [(_pattern_regex(pattern), rule) for pattern, rule in PRODUCERS]


def producing_rule(path: str | os.PathLike) -> str | None:
    """The workflow rule whose output `path` is (matched on the path's tail), None for other files."""
    posix = Path(path).as_posix()
    return next((rule for regex, rule in _PRODUCER_REGEXES if regex.search(posix)), None)


def producing_rules(path: str | os.PathLike) -> list[str]:
    """The workflow rules whose output pattern `path` matches first (a run's store: `train`, or
    `import_run` for an imported run)."""
    posix = Path(path).as_posix()
    matched = [
        (pattern, rule)
        for (pattern, rule), (regex, _) in zip(PRODUCERS, _PRODUCER_REGEXES)
        if regex.search(posix)
    ]
    return [rule for pattern, rule in matched if pattern == matched[0][0]]


def remedy(path: str | os.PathLike, missing: bool = False) -> str:
    """What to do about an unusable file: which rule rebuilds it, and to delete it first."""
    rules = producing_rules(path)
    rule = "` or `".join(rules) if rules else None
    if missing:
        builder = f"rule `{rule}`" if rule else "the step that writes it"
        return f"It is built by {builder}: run snakemake again."
    if rule is None:
        return "Delete it and rebuild it with the step that wrote it (in the workflow: run snakemake again)."
    return f"It is rebuilt by rule `{rule}`: delete it and run snakemake again."


def _open_problem(path: Path, error: OSError) -> str:
    """What is wrong with a file that h5py could not open, in words."""
    message = str(error)
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", message)
    if truncated:
        have, want = truncated.groups()
        return (
            f"is truncated: {have} of its {want} bytes are there "
            "(a full disk, a killed write or a copy that stopped half-way)"
        )
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    if "file signature not found" in message:
        return f"is not an HDF5 file ({size} bytes without the HDF5 signature)"
    return f"cannot be opened as HDF5 ({message})"


def _version_note(f: h5py.File) -> str:
    """Which featdyn wrote the file, when that explains a layout it does not have."""
    version = f.attrs.get("featdyn_version")
    if version is None:
        return "it records no featdyn version, so featdyn's pipeline did not write it"
    if str(version) != __version__:
        return f"it was written by featdyn {version} (this is {__version__}), whose layout differs"
    return f"it was written by this featdyn version ({__version__}), so it is incomplete"


def _check_layout(f: h5py.File, path: Path, required: Iterable[str], attrs: Iterable[str]) -> None:
    missing = [f"`{name}`" for name in required if name not in f]
    missing += [f"attribute `{name}`" for name in attrs if name not in f.attrs]
    if missing:
        raise UnusableInputError(path, f"has no {', '.join(missing)}: {_version_note(f)}")


def _normalised(value: Any) -> Any:
    """`value` as the `config` attribute stores it (JSON, so tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_differences(recorded: Any, expected: Any, prefix: str = "") -> list[str]:
    """Every key path where two (normalised) config trees differ, with both values."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        return [
            line
            for key in sorted(set(recorded) | set(expected))
            for line in config_differences(
                recorded.get(key, _ABSENT), expected.get(key, _ABSENT), f"{prefix}{key}."
            )
        ]
    if recorded == expected:
        return []
    return [f"{prefix.rstrip('.')}: {_show(recorded)} in the file, {_show(expected)} in this job's config"]


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


def check_provenance(f: h5py.File, path: Path, expected: Mapping[str, Any]) -> None:
    """Each top-level entry of `expected` must equal the one the file's `config` attribute records."""
    recorded = json.loads(f.attrs.get("config", "{}"))
    expected = _normalised(dict(expected))
    differences = config_differences({key: recorded.get(key, _ABSENT) for key in expected}, expected)
    if differences:
        listed = "; ".join(differences[:MAX_LISTED_DIFFERENCES])
        more = len(differences) - MAX_LISTED_DIFFERENCES
        listed += f"; and {more} more" if more > 0 else ""
        raise UnusableInputError(path, f"is stale: it was written for another config ({listed})")


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise UnusableInputError(path, "does not exist", missing=True)
    if not os.access(path, os.R_OK):
        raise UnusableInputError(path, "is not readable by this user (check its permissions)")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise UnusableInputError(path, _open_problem(path, error)) from error


@contextlib.contextmanager
def open_h5(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    attrs: Iterable[str] = (),
    expected: Mapping[str, Any] | None = None,
) -> Iterator[h5py.File]:
    """Open a featdyn HDF5 file for reading, checked before the reader sees it.

    `required` names the groups/datasets and `attrs` the attributes the reader needs; `expected`
    holds config subtrees (e.g. `{"run": ..., "recipe": ...}`) the file's recorded `config` must
    match. A read error or missing entry inside the block is reported the same way.
    """
    path = Path(path)
    with _open(path) as f:
        _check_layout(f, path, required, attrs)
        if expected is not None:
            check_provenance(f, path, expected)
        try:
            yield f
        except (OSError, KeyError) as error:
            raise UnusableInputError(path, f"could not be read ({error}); {_version_note(f)}") from error
