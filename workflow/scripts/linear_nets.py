"""Train the orthogonally initialised linear networks of paper 2, Fig. 5(a): one per configured training."""

import torch

from featdyn.io import log_to, write_records
from featdyn.linear_nets import LinearNetSettings, train_linear_net

sm = snakemake  # noqa: F821
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
results = {
    name: train_linear_net(LinearNetSettings(**settings), sm.params.seed)
    for name, settings in sm.params.trainings.items()
}
write_records(sm.output.h5, results, {"trainings": dict(sm.params.trainings), "seed": sm.params.seed})
for name, result in results.items():
    print(
        f"{name}: curvature {result.curvature:+.4f}, log He-Su {result.curvature_he_su:+.3f}, "
        f"train acc {result.train_acc:.3f}, final loss {result.epoch_loss[-1]:.3g}"
    )
