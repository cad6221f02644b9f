"""SGD-noise anisotropy of one run's checkpoint at one epoch and one split depth (docs/definitions.md §4)."""

import pandas as pd
import torch

from featdyn.checkpoints import CheckpointStore, training_provenance
from featdyn.data import read_dataset
from featdyn.device import torch_device
from featdyn.io import log_to, write_tsv
from featdyn.sgd_noise import IsotropySettings, isotropy_at_checkpoint, isotropy_row, write_isotropy

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
run, epoch, depth = sm.wildcards.run, int(sm.wildcards.epoch), int(sm.wildcards.depth)
settings = IsotropySettings(**sm.params.settings)
result = isotropy_at_checkpoint(
    CheckpointStore(sm.input.checkpoints, training_provenance(sm.config, sm.wildcards.run)),
    read_dataset(sm.input.data),
    epoch,
    depth,
    sm.params.batch_size,
    settings,
    cache_dir=sm.params.cache_dir,
    device=torch_device(sm.params.device),
)
provenance = {"isotropy": dict(sm.params.settings), "run": run, "epoch": epoch, "depth": depth}
write_isotropy(result, sm.output.h5, provenance)
write_tsv(pd.DataFrame([isotropy_row(result, run)]), sm.output.row)
print(
    f"{run} epoch {epoch} depth {depth}: M={result['M']} p={result['p']} T={result['T']:.3f} "
    f"bootstrap p={result['bootstrap_p']:.4g} John p={result['john_p']:.3g} CZZ p={result['czz_p']:.3g} "
    f"({result['seconds']:.1f} s)"
)
