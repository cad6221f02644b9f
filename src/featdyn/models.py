"""Models as explicit chains of stages (docs/definitions.md notation `f = f_K ∘ … ∘ f_1`).

Every model is a `Staged` network: `model.stages` is an `nn.ModuleList` and `model(x)` applies the
stages in order. A split depth d cuts it into a shallow part `stages[:d]` and a deep part `stages[d:]`;
`model.stage_names` names every stage (`stem`, `block2.1`, `head`, …; module names for models from
outside), so depth d is "after stage `stage_names[d - 1]`" (`depth_name`).
The CIFAR ResNets follow He et al. (2016) with option-A (zero-padding) shortcuts, as in akamaster's
pytorch_resnet_cifar10: ResNet-20 has 269,722 parameters for 10 classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Staged(nn.Module):
    """A network given as an explicit chain of stages, each with a short name (default `stage<i>`)."""

    def __init__(self, stages: Sequence[nn.Module], names: Sequence[str] | None = None):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        names = [f"stage{i}" for i in range(len(self.stages))] if names is None else [str(n) for n in names]
        if len(names) != len(self.stages) or len(set(names)) != len(names):
            raise ValueError(f"{len(self.stages)} stages need as many distinct names, not {names}")
        self.stage_names = names

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Apply stages[start:stop] (all by default): `forward(x, 0, d)` is the shallow part h."""
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x

    @property
    def n_stages(self) -> int:
        return len(self.stages)


def split(model: Staged, depth: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Shallow part `stages[:depth]` and deep part `stages[depth:]`; they share the model's modules."""
    check_depth(model, depth)
    return nn.Sequential(*model.stages[:depth]), nn.Sequential(*model.stages[depth:])


def preferred_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last for models with 2-D convolutions (the CPU and GPU kernels prefer it), else contiguous."""
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return torch.channels_last
    return torch.contiguous_format


def as_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An image batch in `model`'s preferred memory format; other inputs unchanged."""
    return x.contiguous(memory_format=preferred_memory_format(model)) if x.ndim == 4 else x


def check_depth(model: Staged, depth: int) -> None:
    if not 1 <= depth < model.n_stages:
        raise ValueError(f"split depth {depth} is not in 1..{model.n_stages - 1} for this model")


def depth_name(model: Staged, depth: int) -> str:
    """The name of the last shallow stage at split depth `depth`: the feature h is its output."""
    check_depth(model, depth)
    return model.stage_names[depth - 1]


# --- ResNets (2-D for images, 1-D for signals) -------------------------------------------------


class OptionAShortcut(nn.Module):
    """Identity shortcut that subsamples space and zero-pads channels (He et al., option A)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[(..., *[slice(None, None, self.stride)] * (x.ndim - 2))]
        if self.pad:
            x = F.pad(x, [0, 0] * (x.ndim - 2) + [self.pad // 2, self.pad - self.pad // 2])
        return x


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dim: int):
        super().__init__()
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv1 = conv(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = conv(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.shortcut = OptionAShortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Unsqueeze(nn.Module):
    """(N, L) signals → (N, 1, L) single-channel sequences."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if x.ndim == 2 else x


def resnet(
    blocks_per_group: int,
    num_classes: int,
    in_channels: int = 3,
    widths: Sequence[int] = (16, 32, 64),
    dim: int = 2,
) -> Staged:
    """CIFAR-style ResNet: stem, then every residual block as one stage, then pool + linear head."""
    conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
    stem_layers = [Unsqueeze()] if dim == 1 else []
    stem_layers += [conv(in_channels, widths[0], 3, padding=1, bias=False), bn(widths[0]), nn.ReLU()]
    stages: list[nn.Module] = [nn.Sequential(*stem_layers)]
    names = ["stem"]
    in_planes = widths[0]
    for group, planes in enumerate(widths):
        for i in range(blocks_per_group):
            stride = 2 if group > 0 and i == 0 else 1
            stages.append(BasicBlock(in_planes, planes, stride, dim))
            names.append(f"block{group + 1}.{i + 1}")
            in_planes = planes
    pool = nn.AdaptiveAvgPool1d(1) if dim == 1 else nn.AdaptiveAvgPool2d(1)
    stages.append(nn.Sequential(pool, nn.Flatten(), nn.Linear(in_planes, num_classes)))
    model = Staged(stages, [*names, "head"])
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight)
    return model


# --- MLPs and a small CNN ------------------------------------------------------------------------


def mlp(in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256)) -> Staged:
    """ReLU MLP, one stage per hidden layer (784-256-256-10 for MNIST)."""
    stages: list[nn.Module] = []
    width = in_features
    for i, h in enumerate(hidden):
        layers = [nn.Flatten()] if i == 0 else []
        stages.append(nn.Sequential(*layers, nn.Linear(width, h), nn.ReLU()))
        width = h
    stages.append(nn.Linear(width, num_classes))
    return Staged(stages, [*(f"hidden{i + 1}" for i in range(len(hidden))), "head"])


def bottleneck_mlp(in_features: int, num_classes: int, hidden: int = 100) -> Staged:
    """`in → 100 → 2 → classes` with ReLU after the wide layer only: depth 2 gives the 2-D feature."""
    return Staged(
        [
            nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU()),
            nn.Linear(hidden, 2),
            nn.Linear(2, num_classes),
        ],
        ["hidden", "bottleneck", "head"],
    )


def deep_mlp(
    in_features: int,
    num_classes: int,
    width: int = 100,
    n_hidden: int = 7,
    negative_slope: float = 0.0,
    dropout: float = 0.0,
) -> Staged:
    """Paper 2's MLP: hidden layers Linear → BatchNorm → LeakyReLU(α) (→ Dropout), α = 1 is linear."""
    stages: list[nn.Module] = []
    for i in range(n_hidden):
        layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
        layers += [
            nn.Linear(in_features if i == 0 else width, width),
            nn.BatchNorm1d(width),
            nn.LeakyReLU(negative_slope),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        stages.append(nn.Sequential(*layers))
    stages.append(nn.Linear(width, num_classes))
    return Staged(stages, [*(f"hidden{i + 1}" for i in range(n_hidden)), "head"])


def cnn(in_channels: int, num_classes: int, widths: Sequence[int] = (32, 64, 128)) -> Staged:
    """Conv → BN → ReLU → max-pool stages, then global pool + linear (SVHN, STL-10)."""
    stages: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        stages.append(
            nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
        )
        channels = width
    stages.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)))
    return Staged(stages, [*(f"conv{i + 1}" for i in range(len(widths))), "head"])


# --- paper 2: the orthogonally initialised linear network and the shape-keeping CNN -------------


def orthogonal_(weight: torch.Tensor, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Fill `weight` (out, in) in place with scale × a Haar-random (semi-)orthogonal matrix."""
    with torch.no_grad():
        q = torch.empty(weight.shape, dtype=torch.float64)
        nn.init.orthogonal_(q, generator=generator)
        weight.copy_(scale * q)
    return weight


def linear_net(
    in_features: int,
    num_classes: int,
    width: int = 32,
    n_hidden: int = 6,
    dropout: float = 0.0,
    init_scale: float = 1.0,
    seed: int = 0,
) -> Staged:
    """Linear network without biases or BatchNorm (paper 2, Fig. 5a): one stage per hidden Linear
    (→ Dropout), a linear head; every weight matrix (semi-)orthogonal from a generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    stages: list[nn.Module] = []
    for i in range(n_hidden):
        layer = nn.Linear(in_features if i == 0 else width, width, bias=False)
        orthogonal_(layer.weight, g, init_scale)
        layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
        layers += [layer, nn.Dropout(dropout)] if dropout > 0 else [layer]
        stages.append(nn.Sequential(*layers))
    head = nn.Linear(width, num_classes, bias=False)
    orthogonal_(head.weight, g, init_scale)
    return Staged([*stages, head])


def same_shape_conv_stage(in_channels: int, channels: int, dropout: float = 0.0) -> nn.Sequential:
    """conv 3×3 → BN → ReLU → max-pool 2 → nearest upsample 2 → dropout: (N, C, H, W) → (N, channels, H, W)"""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Dropout(dropout),
    )


def same_shape_cnn(
    sample_shape: Sequence[int],
    num_classes: int,
    channels: int = 16,
    n_conv: int = 7,
    dropout: float = 0.0,
) -> Staged:
    """Paper 2's SM S3 CNN for (C, H, W) inputs (H, W even): n_conv shape-keeping conv stages, a linear head.

    Every stage keeps a Dropout module (rate `dropout`), so a training phase can change its rate.
    """
    in_channels, height, width = sample_shape
    if height % 2 or width % 2:
        raise ValueError(f"pool-then-upsample keeps the shape only for even sizes, got {height}×{width}")
    stages: list[nn.Module] = [
        same_shape_conv_stage(in_channels if i == 0 else channels, channels, dropout) for i in range(n_conv)
    ]
    stages.append(nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, num_classes)))
    return Staged(stages)


# --- registry ----------------------------------------------------------------------------------


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _vit(shape: Sequence[int], k: int, **options) -> Staged:
    from featdyn.vit import vit  # featdyn.vit builds on Staged

    return vit(shape, k, **options)


ModelFactory = Callable[..., Staged]

MODELS: dict[str, ModelFactory] = {
    "resnet20": lambda shape, k, **kw: resnet(3, k, in_channels=shape[0], **kw),
    "resnet32": lambda shape, k, **kw: resnet(5, k, in_channels=shape[0], **kw),
    "resnet56": lambda shape, k, **kw: resnet(9, k, in_channels=shape[0], **kw),
    "resnet1d": lambda shape, k, **kw: resnet(kw.pop("blocks_per_group", 1), k, in_channels=1, dim=1, **kw),
    "mlp": lambda shape, k, **kw: mlp(_numel(shape), k, **kw),
    "bottleneck_mlp": lambda shape, k, **kw: bottleneck_mlp(_numel(shape), k, **kw),
    "deep_mlp": lambda shape, k, **kw: deep_mlp(_numel(shape), k, **kw),
    "cnn": lambda shape, k, **kw: cnn(shape[0], k, **kw),
    "linear_net": lambda shape, k, **kw: linear_net(_numel(shape), k, **kw),
    "same_shape_cnn": lambda shape, k, **kw: same_shape_cnn(shape, k, **kw),
    "vit": _vit,
}
"""name → factory(sample_shape, num_classes, **options)."""


def is_external_model(name: str) -> bool:
    """Whether a model name names a factory from outside: `package.module:factory`,
    `path/to/net.py:factory` or `torchvision:<name>` (see `featdyn.external`)."""
    return ":" in name


def build_model(name: str, sample_shape: Sequence[int], num_classes: int, **options) -> Staged:
    """Build a registered model, or one from outside (a name with a colon, `featdyn.external`), for
    inputs of `sample_shape` (without the batch axis). For outside models the options `stages`,
    `split_at`, `weights_file` and `verify` are featdyn's; the others go to the factory."""
    if is_external_model(name):
        from featdyn.external import build_external  # imports featdyn.composite, which imports this

        return build_external(name, tuple(sample_shape), num_classes, **options)
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; available: {sorted(MODELS)}, or 'package.module:factory', "
            "'path/to/net.py:factory', 'torchvision:<name>'"
        )
    return MODELS[name](tuple(sample_shape), num_classes, **options)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
