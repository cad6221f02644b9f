"""A small vision transformer as a `Staged` chain (SPEC.md notation `f = f_K ∘ … ∘ f_1`).

Stage 1 is the patch embedding (non-overlapping patches projected to `dim`, a learned class token
prepended, learned position embeddings added), every pre-norm encoder block is one stage, and the last
stage is the head (LayerNorm, then the class token or the mean over tokens, then a linear layer). The
same model serves images (C, H, W) with square patches and signals (L,) or (C, L) with patches of
length `patch`. Everything is batched tensor code (matmul attention, LayerNorm), so `torch.func.vmap`
over stacked checkpoint weights runs it like the CNNs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from featdyn.models import Staged


class PatchEmbedding(nn.Module):
    """x → [cls; patches·W] + pos: (N, C, H, W) or (N, C, L) (also (N, L)) → (N, 1 + n_patches, dim)."""

    def __init__(self, in_channels: int, patch: int, dim: int, n_patches: int, spatial_dims: int):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv1d
        self.spatial_dims = spatial_dims
        self.proj = conv(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, n_patches + 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 1 and x.ndim == 2:
            x = x.unsqueeze(1)
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v, written with matmuls: `torch.func.vmap` has batching rules for every op
    here, while CPU `F.scaled_dot_product_attention` falls back to a per-checkpoint loop under vmap."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.softmax(-1) @ v


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the token axis."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT width dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.out(attention(q, k, v).transpose(1, 2).reshape(n, t, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTHead(nn.Module):
    """LayerNorm, then the class token (`pool="cls"`) or the token mean (`pool="mean"`), then linear."""

    def __init__(self, dim: int, num_classes: int, pool: str):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"ViT pool={pool!r} is not one of ['cls', 'mean']")
        self.pool = pool
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.linear(x[:, 0] if self.pool == "cls" else x.mean(1))


def _patch_grid(sample_shape: Sequence[int], patch: int) -> tuple[int, int, int]:
    """(in_channels, spatial_dims, n_patches) for images (C, H, W) or signals (L,) / (C, L)."""
    shape = tuple(sample_shape)
    if len(shape) not in (1, 2, 3):
        raise ValueError(f"ViT inputs are (C, H, W) images or (L,) / (C, L) signals, not {shape}")
    channels, spatial = (1, shape) if len(shape) == 1 else (shape[0], shape[1:])
    if any(s % patch for s in spatial):
        fits = [p for p in range(1, min(spatial) + 1) if all(s % p == 0 for s in spatial)]
        raise ValueError(
            f"ViT patch={patch} does not divide the input size {spatial}; patch sizes that do: {fits}"
        )
    n_patches = 1
    for s in spatial:
        n_patches *= s // patch
    return channels, len(spatial), n_patches


def vit(
    sample_shape: Sequence[int],
    num_classes: int,
    patch: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    pool: str = "cls",
    dropout: float = 0.0,
) -> Staged:
    """Vision transformer: patch embedding, `depth` encoder blocks, head — one stage each."""
    channels, spatial_dims, n_patches = _patch_grid(sample_shape, patch)
    embedding = PatchEmbedding(channels, patch, dim, n_patches, spatial_dims)
    blocks = [EncoderBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)]
    names = ["embed", *(f"block{i + 1}" for i in range(depth)), "head"]
    model = Staged([embedding, *blocks, ViTHead(dim, num_classes, pool)], names)
    _init_weights(model)
    return model


def _init_weights(model: Staged) -> None:
    """Truncated-normal (std 0.02) linear, projection and position weights, zero biases (as in ViT)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, PatchEmbedding):
            nn.init.trunc_normal_(module.pos_embedding, std=0.02)


def vit_factory(shape: Sequence[int], k: int, **options) -> Staged:
    """`MODELS`-compatible factory: `MODELS["vit"] = vit_factory`."""
    return vit(shape, k, **options)
