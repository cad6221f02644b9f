"""featdyn's training loop against an akamaster-style DataLoader loop, in one process.

    python benchmarks/train.py [--quick] [--threads 1] [--workers 1] [--epochs 4] [--compile]

ResNet-20 on synthetic CIFAR-shaped images (a class template plus noise, so that accuracy means
something), SGD (lr 0.1, momentum 0.9, weight decay 1e-4), batch 128, random crop (padding 4) and
horizontal flip, from the same initialisation:

- baseline: akamaster/pytorch_resnet_cifar10's loop — a torchvision dataset of PIL images with
  per-image `RandomHorizontalFlip`, `RandomCrop(32, 4)`, `ToTensor`, `Normalize`, a shuffling
  `DataLoader` with `--workers` worker processes, contiguous (NCHW) fp32 tensors, `loss.item()` per batch;
- featdyn fp32: `featdyn.train.train_epoch` (data normalised on the device once, batched on-device
  augmentation, channels_last for conv models, multi-tensor SGD);
- featdyn bf16: the same with `precision: bf16` (autocast);
- featdyn compiled (`--compile`): the same with `compile: true` (torch.compile; its compile time is
  printed apart; it pays off only on long runs).

The variants train round-robin, one epoch each in turn, so they share the machine's load; the table
gives each variant's best epoch (img/s; epochs after the first for the compiled one), its ratio to the
baseline, and the test accuracy after `--epochs` epochs with its difference to featdyn fp32.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from featdyn.data import Arrays, normalizer, tensor_data, to_float
from featdyn.models import Staged, build_model
from featdyn.train import Recipe, TrainSpec, evaluate, make_optimizer, train_epoch


def synthetic_cifar(n_train: int, n_test: int, seed: int = 0) -> Arrays:
    """uint8 (N, 3, 32, 32) images: a smooth random template per class plus pixel noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (10, 3, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = 0.25 * templates[y] + rng.uniform(0, 191, (n, 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return Arrays(xtr, ytr, xte, yte, 10, "synthetic")


class PILImages(Dataset):
    """A torchvision-style image dataset: PIL images, per-image transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable):
        self.images = [Image.fromarray(img.transpose(1, 2, 0)) for img in x]
        self.y, self.transform = y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.y[i])


def akamaster_loader(arrays: Arrays, batch_size: int, workers: int, seed: int) -> DataLoader:
    mean, std = normalizer(to_float(arrays.x_train))
    transform = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(32, 4),
            transforms.ToTensor(),
            transforms.Normalize(mean.flatten().tolist(), std.flatten().tolist()),
        ]
    )
    return DataLoader(
        PILImages(arrays.x_train, arrays.y_train, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def akamaster_epoch(model: Staged, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the loss meter's sync per batch


class Variant:
    """One training run that advances an epoch at a time and records each epoch's seconds."""

    def __init__(self, name: str, model: Staged, step: Callable[[int], None], test: Callable[[], float]):
        self.name, self.model, self.step, self.test = name, model, step, test
        self.seconds: list[float] = []

    def epoch(self, epoch: int) -> None:
        start = time.perf_counter()
        self.step(epoch)
        self.seconds.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a ≤ 30 s version (fewer images and epochs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes of the baseline")
    parser.add_argument("--train", type=int, default=2048, help="training images (a multiple of 128)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    args = parser.parse_args()
    if args.quick:
        args.train, args.epochs = 512, 2
    torch.set_num_threads(args.threads)
    arrays = synthetic_cifar(args.train, 1000)
    data = tensor_data(arrays)
    torch.manual_seed(0)
    init = build_model("resnet20", (3, 32, 32), 10)

    def featdyn_variant(name: str, **recipe_options) -> Variant:
        model = copy.deepcopy(init).to(memory_format=torch.channels_last)
        spec = TrainSpec(Recipe(lr=0.1, batch_size=128, augment=True, **recipe_options), args.epochs)
        optimizer = make_optimizer(model, spec.recipe)
        forward = torch.compile(model) if spec.recipe.compile else model
        return Variant(
            name,
            model,
            lambda epoch: train_epoch(model, optimizer, data, spec, epoch, forward=forward),
            lambda: evaluate(model, data.x_test, data.y_test)[1],
        )

    baseline_model = copy.deepcopy(init)
    baseline_optimizer = torch.optim.SGD(baseline_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = akamaster_loader(arrays, 128, args.workers, seed=0)
    variants = [
        Variant(
            "akamaster DataLoader",
            baseline_model,
            lambda epoch: akamaster_epoch(baseline_model, baseline_optimizer, loader),
            lambda: evaluate(baseline_model, data.x_test, data.y_test)[1],
        ),
        featdyn_variant("featdyn fp32"),
        featdyn_variant("featdyn bf16", precision="bf16"),
    ]
    if args.compile:
        variants.append(featdyn_variant("featdyn compiled", compile=True))
    for epoch in range(1, args.epochs + 1):
        for variant in variants:
            variant.epoch(epoch)
    rates = {
        v.name: args.train / min(v.seconds[1:] if v.name.endswith("compiled") else v.seconds)
        for v in variants
    }
    accuracy = {v.name: v.test() for v in variants}
    base, fp32 = variants[0].name, "featdyn fp32"
    print(
        f"ResNet-20, {args.train} synthetic 32×32 images, batch 128, {args.epochs} epochs, torch threads "
        f"{torch.get_num_threads()}, baseline workers {args.workers}; best epoch of each, trained round-robin"
    )
    print(f"{'variant':<22} {'img/s':>8} {'vs baseline':>11} {'test acc':>9} {'Δ acc vs fp32':>13}")
    for v in variants:
        print(
            f"{v.name:<22} {rates[v.name]:8,.0f} {rates[v.name] / rates[base]:10.2f}x "
            f"{accuracy[v.name]:9.3f} {accuracy[v.name] - accuracy[fp32]:+13.3f}"
        )
    if args.compile:
        compiled = variants[-1]
        compile_s = compiled.seconds[0] - min(compiled.seconds[1:])
        print(f"compile time (first epoch minus a steady one): {compile_s:.0f} s")


if __name__ == "__main__":
    main()
