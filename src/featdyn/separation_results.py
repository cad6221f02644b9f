"""Load-curve files without torch (docs/definitions.md §9): `separation.h5` written and read.

`featdyn.separation` computes the curves; figure jobs read them through this module, without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, load_arrays, save_arrays

MEASURES = ("D", "he_su", "tr_within", "tr_between")


def write_separation(
    result: Mapping[str, Mapping[str, np.ndarray]],
    epochs: Sequence[int],
    path: str | os.PathLike,
    provenance: Mapping[str, Any],
) -> None:
    """`separation.h5`: `epochs`, then per evaluation set a group with D, he_su, tr_within, tr_between
    (n_epochs, K + 1) and curvature (n_epochs,); attribute `eval_sets` keeps their order."""
    with atomic_h5(path, provenance) as f:
        f.attrs["eval_sets"] = list(result)
        f.create_dataset("epochs", data=np.asarray(epochs, dtype=np.int64))
        for name, arrays in result.items():
            save_arrays(f.create_group(name), arrays)


def read_separation(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy tables of a `separation.h5`: load curves (eval_set, epoch, layer, measures) and curvature
    per epoch (eval_set, epoch, curvature)."""
    curves, bends = [], []
    with open_h5(path, ("epochs",), attrs=("eval_sets",)) as f:
        epochs = f["epochs"][()]
        for name in f.attrs["eval_sets"]:
            arrays = load_arrays(f[name])
            n_layers = arrays["D"].shape[1]
            index = pd.MultiIndex.from_product([epochs, range(n_layers)], names=["epoch", "layer"])
            frame = pd.DataFrame({key: arrays[key].ravel() for key in MEASURES}, index=index)
            curves.append(frame.reset_index().assign(eval_set=name))
            bends.append(pd.DataFrame({"eval_set": name, "epoch": epochs, "curvature": arrays["curvature"]}))
    return pd.concat(curves, ignore_index=True), pd.concat(bends, ignore_index=True)
