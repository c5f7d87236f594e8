"""Small modules shared by the tests of minicnn.nn (arithmetic only, and a tiny CNN)."""

from collections import OrderedDict

import minicnn
from minicnn import nn


class Affine(nn.Module):
    """y = x * scale + shift, with a persistent and a non-persistent buffer."""

    def __init__(self, n=3):
        super().__init__()
        self.scale = nn.Parameter(minicnn.ones(n))
        self.shift = nn.Parameter(minicnn.zeros(n))
        self.register_buffer("count", minicnn.zeros(n))
        self.register_buffer("cache", minicnn.zeros(n), persistent=False)

    def forward(self, x):
        return x * self.scale + self.shift


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(Affine(), Affine())
        self.head = Affine()

    def forward(self, x):
        return self.head(self.features(x))


def small_cnn():
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(2, 4, 3, padding=1)),
                ("bn", nn.BatchNorm2d(4)),
                ("relu", nn.ReLU()),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()),
                ("fc", nn.Linear(4, 3)),
            ]
        )
    )
