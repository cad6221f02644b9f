"""The torch device a job runs on."""

from __future__ import annotations


def torch_device(requested: str) -> str:
    """`cpu`, `cuda`, or for `auto` CUDA when torch sees a device; `cuda` without one is an error."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device `cuda` but torch sees no CUDA device; set `device: cpu`")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
