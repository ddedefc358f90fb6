"""The position-wise feed-forward network of every block."""
from __future__ import annotations

from torch import nn


class Mlp(nn.Sequential):
    """Linear -> GELU -> Linear."""

    def __init__(self, width: int, hidden: int):
        super().__init__(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
