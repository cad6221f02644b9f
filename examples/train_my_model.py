"""A plain PyTorch training script (no featdyn in it) that saves a checkpoint every epoch.

    python examples/train_my_model.py [--out examples/run] [--epochs 20] [--samples 4000]

It makes MNIST-1D signals with the `mnist1d` package, writes them to `<out>/data.npz` (x_train,
y_train, x_test, y_test: featdyn's `arrays` dataset source) and trains `examples/my_model.py` on the
raw signals with SGD, saving `<out>/ckpt_<epoch>.pt` for epoch 0 (the initialisation) and every
epoch after it, as `{"epoch", "state_dict", "optimizer"}` dicts. `examples/config.yaml` then imports
the run into featdyn and analyses it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mnist1d.data import get_dataset_args, make_dataset

sys.path.insert(0, str(Path(__file__).parent))
from my_model import build  # noqa: E402


def make_data(out: Path, samples: int, seed: int) -> dict[str, np.ndarray]:
    args = get_dataset_args()
    args.num_samples, args.seed = samples, seed
    d = make_dataset(args)
    data = {
        "x_train": d["x"].astype(np.float32),
        "y_train": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32),
        "y_test": d["y_test"].astype(np.int64),
    }
    np.savez(out / "data.npz", **data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("examples/run"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_data(args.out, args.samples, args.seed)
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    x_test, y_test = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    torch.manual_seed(args.seed)
    model = build(num_classes=10, width=args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    def save(epoch: int) -> None:
        state = {"epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(state, args.out / f"ckpt_{epoch}.pt")

    save(0)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(y)).split(args.batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {accuracy:.3f}")
        save(epoch)


if __name__ == "__main__":
    main()
