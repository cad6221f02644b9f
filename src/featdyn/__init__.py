"""featdyn: how the internal features of deep networks evolve during training."""

__version__ = "0.1.0"
