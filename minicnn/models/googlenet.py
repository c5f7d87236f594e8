"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions").

An Inception module runs four branches on the same input and concatenates them on channels:
    branch1  1x1 conv                                   (ch1x1)
    branch2  1x1 conv (ch3x3red) -> 3x3 conv            (ch3x3)
    branch3  1x1 conv (ch5x5red) -> 5x5 conv            (ch5x5)
    branch4  3x3/1 max pool      -> 1x1 conv            (pool_proj)
The 1x1 "reduce" convs shrink the channels before the expensive 3x3/5x5 (sec. 4): that is how a
22-layer network stays at ~7M parameters. Two auxiliary classifiers on inception4a and
inception4d (avg pool -> 1x1 conv 128 -> FC 1024 -> dropout 0.7 -> FC) add gradient to the middle
of the network during training; their losses count with weight 0.3 (``googlenet_loss``).

``variant="paper"`` (default) follows Table 1 and Figure 3: convs with biases and ReLU, no
BatchNorm, a true 5x5 in branch3, LocalResponseNorm after the first max pool and after conv3
(Figure 3; size 5, alpha 1e-4, beta 0.75, k 1 as the reference Caffe model bvlc_googlenet), 3x3/2
max pools everywhere, aux heads with the paper's 5x5/3 average pool, dropout 0.4 before the
classifier. Weights use the Caffe model's init (the paper gives none): U(±sqrt(3 / fan_in)), biases
0.2, classifier biases 0. The final 7x7/1 average pool is an adaptive 1x1 pool (the same at
224x224);
an adaptive 4x4 pool after the aux heads' 5x5/3 pool is the identity at 224x224 and lets other sizes
reach the aux FC (2048 inputs). Module names follow torchvision's where the parts agree
(``conv1.conv``, ``inception3a.branch2.1.conv``, ``aux1.fc1``; the LRNs are ``lrn1`` and ``lrn2``).

``variant="torchvision"``: torchvision's GoogLeNet (its state_dict keys): every conv is
conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU, branch3 uses a 3x3 conv (a known slip of the port,
pytorch/vision#906), the 4th pool is 2x2/2, aux heads use an adaptive 4x4 average pool, dropout 0.2;
init: truncated normal (std 0.01) for conv/linear weights. ``transform_input=True`` re-normalises
ImageNet-normalised input the way torchvision's pretrained weights expect.

Output: in training mode with ``aux_logits`` the model returns
``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's namedtuple); otherwise the
logits Tensor. Smallest input: 31x31 (paper), 15x15 (torchvision) — each 3x3/2 max pool (ceil mode)
needs a 2x2 map; the paper's aux heads need a 5x5 inception4a map in training, i.e. 79x79.
"""

from __future__ import annotations

from collections import namedtuple

from .. import functional as F
from .. import nn
from ..nn.normalization import batch_norm_relu
from ..ops.shape import cat
from ._common import check_input, check_variant, init_bn_
from ._registry import register_model

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "googlenet", "googlenet_loss"]

VARIANTS = ("paper", "torchvision")

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# Table 1: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) of each inception module.
INCEPTION_CFG = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def out_channels(name):
    """Channels leaving inception module ``name``: the four branches concatenated."""
    c1, _, c3, _, c5, pp = INCEPTION_CFG[name]
    return c1 + c3 + c5 + pp


class BasicConv2d(nn.Module):
    """torchvision's unit: conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return batch_norm_relu(self.bn, None, self.conv(x))


class ConvReLU(nn.Module):
    """The paper's unit: conv (with bias) -> ReLU ("all convolutions use rectified linear
    activation")."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **kwargs)

    def forward(self, x):
        return F.relu(self.conv(x))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (Figure 2b)."""

    def __init__(
        self,
        in_channels,
        ch1x1,
        ch3x3red,
        ch3x3,
        ch5x5red,
        ch5x5,
        pool_proj,
        conv_block=BasicConv2d,
        kernel5=5,
    ):
        super().__init__()
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1),
            conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=kernel5, padding=kernel5 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x):
        return cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg pool -> 1x1 conv 128 -> FC 1024 + ReLU -> dropout 0.7 -> FC.

    ``pool`` is the paper's AvgPool2d(5, stride=3) (14x14 -> 4x4) or None for torchvision's
    adaptive 4x4 pool; either way an adaptive 4x4 pool then fixes the FC input at 128·4·4 = 2048.
    """

    def __init__(self, in_channels, num_classes, conv_block=BasicConv2d, dropout=0.7, paper=False):
        super().__init__()
        if paper:
            self.avgpool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.conv = conv_block(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        if "avgpool" in self._modules:
            x = self.avgpool(x)
        x = F.adaptive_avg_pool2d(x, (4, 4))
        x = self.conv(x).flatten(1)
        x = F.relu(self.fc1(x))
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """Stem -> inception 3a, 3b -> pool -> 4a..4e -> pool -> 5a, 5b -> avg pool -> dropout -> fc."""

    def __init__(
        self,
        num_classes=1000,
        aux_logits=True,
        transform_input=False,
        init_weights=True,
        dropout=None,
        dropout_aux=0.7,
        variant="paper",
    ):
        super().__init__()
        self.variant = check_variant("googlenet", variant, VARIANTS)
        self.arch = f"googlenet(variant={variant!r})"
        paper = variant == "paper"
        block = ConvReLU if paper else BasicConv2d
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.default_input_size = (3, 224, 224)
        self.min_input_size, self.min_input_size_aux = (31, 79) if paper else (15, 15)

        self.conv1 = block(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        if paper:
            self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = block(64, 64, kernel_size=1)
        self.conv3 = block(64, 192, kernel_size=3, padding=1)
        if paper:
            self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        c_in = 192
        for name, cfg in INCEPTION_CFG.items():
            setattr(
                self,
                "inception" + name,
                Inception(c_in, *cfg, conv_block=block, kernel5=5 if paper else 3),
            )
            c_in = out_channels(name)
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)

        if aux_logits:
            self.aux1 = InceptionAux(out_channels("4a"), num_classes, block, dropout_aux, paper)
            self.aux2 = InceptionAux(out_channels("4d"), num_classes, block, dropout_aux, paper)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=(0.4 if paper else 0.2) if dropout is None else dropout)
        self.fc = nn.Linear(1024, num_classes)
        if init_weights:
            self._init_paper_weights() if paper else self._init_torchvision_weights()

    def _init_torchvision_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            else:
                init_bn_(m)

    def _init_paper_weights(self):
        # Caffe's "xavier" filler is U(±sqrt(3 / fan_in)): kaiming_uniform_ with gain 1.
        classifiers = {id(self.fc)} | {id(a.fc2) for a in (self.aux1, self.aux2) if a is not None}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="linear")
                nn.init.constant_(m.bias, 0.0 if id(m) in classifiers else 0.2)

    def _transform_input(self, x):
        """torchvision's re-normalisation: ImageNet mean/std normalisation -> (x - 0.5) / 0.5."""
        if not self.transform_input:
            return x
        stats = ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))
        chans = [
            x[:, c : c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
            for c, (mean, std) in enumerate(stats)
        ]
        return cat(chans, 1)

    def _check_input(self, x):
        if self.training and self.aux_logits and self.aux1 is not None:
            check_input(
                self,
                x,
                self.min_input_size_aux,
                "in training the aux heads need a 5x5 "
                "inception4a map for their 5x5/3 average pool; use eval() or aux_logits=False "
                "for smaller inputs"
                if self.variant == "paper"
                else "",
            )
        check_input(self, x, self.min_input_size, "each 3x3/2 max pool needs at least a 2x2 map")

    def forward(self, x):
        self._check_input(x)
        x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))  # N x 64 x 56 x 56 (at 224)
        if "lrn1" in self._modules:
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))  # N x 192 x 56 x 56
        if "lrn2" in self._modules:
            x = self.lrn2(x)
        x = self.maxpool2(x)  # N x 192 x 28 x 28
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        run_aux = self.training and self.aux_logits and self.aux1 is not None
        aux1 = self.aux1(x) if run_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if run_aux else None
        x = self.maxpool4(self.inception4e(x))  # N x 832 x 7 x 7
        x = self.inception5b(self.inception5a(x))  # N x 1024 x 7 x 7
        x = self.avgpool(x).flatten(1)  # N x 1024
        x = self.fc(self.dropout(x))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet_loss(outputs, target, aux_weight=0.3, label_smoothing=0.0):
    """Cross-entropy of the main logits plus ``aux_weight`` (0.3, sec. 5) times each aux head's.

    ``outputs`` is what GoogLeNet returns: a GoogLeNetOutputs in training with aux heads (then
    loss = CE(logits) + 0.3·CE(aux2) + 0.3·CE(aux1)) or a plain logits Tensor (then CE alone).
    """
    ce = lambda z: F.cross_entropy(z, target, label_smoothing=label_smoothing)  # noqa: E731
    if isinstance(outputs, GoogLeNetOutputs):
        loss = ce(outputs.logits)
        for aux in (outputs.aux_logits2, outputs.aux_logits1):
            if aux is not None:
                loss = loss + aux_weight * ce(aux)
        return loss
    return ce(outputs)


@register_model("googlenet")
def googlenet(
    num_classes: int = 1000, variant: str = "paper", aux_logits: bool = True, **kwargs
) -> GoogLeNet:
    """GoogLeNet; ``variant="paper"`` (Table 1, LRN, 5x5 branch) or ``"torchvision"``."""
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, variant=variant, **kwargs)
