"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks"): the paper's two-tower network and torchvision's single-tower version.

``variant="paper"`` (default), for 3x227x227 input:
    conv1  96 @ 11x11 / 4        -> ReLU -> LRN -> max pool 3x3 / 2     (55 -> 27)
    conv2 256 @ 5x5, pad 2, two towers (groups=2: each tower sees its own 48 channels)
                                 -> ReLU -> LRN -> max pool 3x3 / 2     (27 -> 13)
    conv3 384 @ 3x3, pad 1       (crosses the towers: groups=1)         -> ReLU
    conv4 384 @ 3x3, pad 1, groups=2 -> ReLU
    conv5 256 @ 3x3, pad 1, groups=2 -> ReLU -> max pool 3x3 / 2        (13 -> 6)
    fc6 9216 -> 4096 -> ReLU -> dropout 0.5, fc7 4096 -> 4096 -> ReLU -> dropout 0.5, fc8 -> classes
  The pools overlap (window 3 > stride 2, sec. 3.4). LRN (sec. 3.3) uses the paper's k=2, n=5,
  alpha=1e-4, beta=0.75; the paper's alpha multiplies the plain sum of squares while
  minicnn/PyTorch's LocalResponseNorm divides its alpha by n, so the layer is built with
  alpha = n * 1e-4 = 5e-4 to compute exactly the paper's formula. Init as sec. 5: weights
  N(0, 0.01²), biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 elsewhere.
  An AdaptiveAvgPool2d((6, 6)) before fc6 is the identity at 227x227 (the map is already 6x6) and
  lets other input sizes reach fc6; the smallest input is 67x67 (conv1 must give 15 so that the
  three 3x3/2 pools leave 7, 3, 1).

``variant="torchvision"``: torchvision's AlexNet (after "One weird trick…", Krizhevsky 2014):
64-192-384-256-256 channels, one tower, no LRN, padding 2 on conv1, dropout before fc6 and fc7,
PyTorch's default layer init; same state_dict keys as torchvision. Smallest input 63x63.
"""

from __future__ import annotations

from .. import nn
from ._common import check_input, check_variant
from ._registry import register_model

__all__ = ["AlexNet", "alexnet"]

VARIANTS = ("paper", "torchvision")


def _paper_features():
    return nn.Sequential(
        nn.Conv2d(3, 96, kernel_size=11, stride=4),
        nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
        nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _paper_classifier(num_classes, dropout):
    return nn.Sequential(
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(4096, num_classes),
    )


def _torchvision_features():
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _torchvision_classifier(num_classes, dropout):
    return nn.Sequential(
        nn.Dropout(p=dropout),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


class AlexNet(nn.Module):
    """features -> avgpool (adaptive 6x6) -> flatten -> classifier (torchvision's module names)."""

    def __init__(self, num_classes=1000, dropout=0.5, variant="paper"):
        super().__init__()
        self.variant = check_variant("alexnet", variant, VARIANTS)
        self.arch = f"alexnet(variant={variant!r})"
        paper = variant == "paper"
        self.features = _paper_features() if paper else _torchvision_features()
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = (_paper_classifier if paper else _torchvision_classifier)(
            num_classes, dropout
        )
        self.default_input_size = (3, 227, 227) if paper else (3, 224, 224)
        self.min_input_size = 67 if paper else 63
        if paper:
            self._init_paper_weights()

    def _init_paper_weights(self):
        """Sec. 5: N(0, 0.01²) weights; bias 1 in conv2, conv4, conv5, fc6, fc7 (ReLUs start
        with positive input), 0 in conv1, conv3 and fc8."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for i, m in enumerate(convs + fcs):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if i in (1, 3, 4, 5, 6) else 0.0)

    def forward(self, x):
        check_input(
            self,
            x,
            self.min_input_size,
            "three overlapping 3x3/2 max pools after the stride-4 conv1",
        )
        x = self.features(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        return self.classifier(x)


@register_model("alexnet")
def alexnet(num_classes: int = 1000, variant: str = "paper", dropout: float = 0.5) -> AlexNet:
    """AlexNet; ``variant="paper"`` (two towers, LRN, 227x227) or ``"torchvision"``."""
    return AlexNet(num_classes=num_classes, dropout=dropout, variant=variant)
