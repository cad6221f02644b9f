"""A user's own network, as it might live in any research repository: a plain `nn.Module`.

featdyn does not need it to be written in any particular way: `examples/config.yaml` names the factory
(`examples/my_model.py:build`) and says which modules form each stage.
"""

import torch
from torch import nn


class SignalCNN(nn.Module):
    """1-D CNN for signals of shape (N, L): three conv blocks, global average pooling, a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.reshape = nn.Unflatten(1, (1, -1))  # (N, L) -> (N, 1, L)
        self.conv1, self.bn1, self.relu1 = nn.Conv1d(1, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU()
        self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.bn2, self.relu2 = nn.BatchNorm1d(width), nn.ReLU()
        self.conv3 = nn.Conv1d(width, 2 * width, 3, stride=2, padding=1)
        self.bn3, self.relu3 = nn.BatchNorm1d(2 * width), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(self.reshape(x))))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(num_classes: int = 10, width: int = 16) -> SignalCNN:
    return SignalCNN(num_classes, width)
