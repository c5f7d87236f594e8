"""ResNet (He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition").

A residual block learns F(x) and outputs relu(F(x) + x) (sec. 3.1): the identity path lets the
signal and its gradient skip the block, which fixed the degradation of deeper plain networks.
When a block changes the shape (stride 2, more channels) the shortcut changes too:
  - option B (ImageNet models): a 1x1 conv with the block's stride + BatchNorm ("projection",
    module name ``downsample`` as torchvision);
  - option A (the paper's CIFAR models, sec. 4.2): parameter-free — subsample by 2 and append
    zero channels (``ZeroPadShortcut``).
Blocks (``expansion`` = output channels / ``planes``):
  BasicBlock  (18, 34; expansion 1):  3x3 -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU
  Bottleneck  (50+;    expansion 4):  1x1 reduce -> 3x3 -> 1x1 expand (each + BN), + shortcut, ReLU
``variant="torchvision"`` (default) is torchvision's "ResNet v1.5": a downsampling bottleneck
strides in its 3x3 conv. ``variant="paper"`` strides in the first 1x1 conv as the paper (and the
original Caffe models). Parameters and keys are the same; for BasicBlock the variants coincide.

ImageNet layout (Table 1, torchvision's names): conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2 ->
layer1..layer4 (64, 128, 256, 512 planes; stride 2 from layer2 on) -> avgpool (adaptive 1x1) -> fc.
Init as torchvision: convs kaiming_normal_(fan_out, relu), BN weight 1 bias 0, fc PyTorch default;
``zero_init_residual`` zeroes the last BN of each block. Any input of at least 1x1 runs (every
strided layer is padded), but 224x224 is the design size.

CIFAR layout (sec. 4.2, 32x32 input): conv 3x3 16 -> 3 stages of n BasicBlocks with 16, 32, 64
channels (stride 2 at the start of stages 2 and 3) -> global average pool -> fc; depth 6n + 2
gives resnet20/32/44/56/110 (0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters with option A).
"""

from __future__ import annotations

from .. import functional as F
from .. import nn
from ..nn.normalization import batch_norm_relu
from ..ops.shape import cat
from ..tensor import zeros
from ._common import check_input, check_variant, init_bn_
from ._registry import register_model

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ResNet",
    "ZeroPadShortcut",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
]

VARIANTS = ("torchvision", "paper")
SHORTCUTS = ("A", "B", "plain")  # "plain": no shortcut, the paper's plain-20/56 baselines


def conv3x3(in_planes, out_planes, stride=1):
    """3x3 convolution with padding 1 (no bias: a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution (no bias: a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1
    residual = True  # False in the paper's plain baselines (shortcut="plain"): no "+ identity"

    def __init__(self, inplanes, planes, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = batch_norm_relu(self.bn1, self.relu, self.conv1(x))
        out = self.bn2(self.conv2(out))
        if not self.residual:
            return self.relu(out)
        identity = x if self.downsample is None else self.downsample(x)  # after, as torchvision
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = batch_norm_relu(self.bn1, self.relu, self.conv1(x))
        out = batch_norm_relu(self.bn2, self.relu, self.conv2(out))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)  # after, as torchvision
        return self.relu(out + identity)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: x[:, :, ::stride, ::stride] with zero channels appended (no parameters).

    The subsampling is an average pool with a 1x1 window (the same values as the slice).
    """

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x):
        if self.stride != 1:
            x = F.avg_pool2d(x, kernel_size=1, stride=self.stride)
        extra = self.out_channels - self.in_channels
        if extra == 0:
            return x
        n, _, h, w = x.shape
        return cat([x, zeros(n, extra, h, w, dtype=x.dtype, device=x.device)], 1)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def _make_layer(block, inplanes, planes, blocks, stride, shortcut="B", stride_in_1x1=False):
    """(Sequential of ``blocks`` blocks, output channels); the first may stride and reshape."""
    out_planes = planes * block.expansion
    downsample = None
    if shortcut != "plain" and (stride != 1 or inplanes != out_planes):
        if shortcut == "A":
            downsample = ZeroPadShortcut(inplanes, out_planes, stride)
        else:
            downsample = nn.Sequential(
                conv1x1(inplanes, out_planes, stride), nn.BatchNorm2d(out_planes)
            )
    layers = [block(inplanes, planes, stride, downsample, stride_in_1x1)]
    layers += [block(out_planes, planes, stride_in_1x1=stride_in_1x1) for _ in range(1, blocks)]
    for b in layers if shortcut == "plain" else ():
        b.residual = False
    return nn.Sequential(*layers), out_planes


def _init_weights(model, zero_init_residual):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        else:
            init_bn_(m)
    if zero_init_residual:
        # Each block then starts as the identity (Goyal et al. 2017, "Accurate, Large Minibatch
        # SGD").
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    """The ImageNet ResNets: ``layers`` = blocks per stage, e.g. [3, 4, 6, 3] for ResNet-50."""

    def __init__(
        self,
        block,
        layers,
        num_classes=1000,
        zero_init_residual=False,
        variant="torchvision",
        arch="resnet",
    ):
        super().__init__()
        self.variant = check_variant(arch, variant, VARIANTS)
        self.arch = arch if variant == "torchvision" else f"{arch}(variant='paper')"
        self.default_input_size, self.min_input_size = (3, 224, 224), 1
        stride_in_1x1 = variant == "paper"
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            layer, inplanes = _make_layer(
                block, inplanes, planes, n, 1 if i == 0 else 2, stride_in_1x1=stride_in_1x1
            )
            setattr(self, f"layer{i + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self, zero_init_residual)

    def forward(self, x):
        check_input(self, x, self.min_input_size)
        x = self.maxpool(batch_norm_relu(self.bn1, self.relu, self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


class CifarResNet(nn.Module):
    """The paper's CIFAR-10 ResNets (sec. 4.2): depth = 6n + 2, stages of 16/32/64 channels."""

    def __init__(self, depth, num_classes=10, shortcut="A", zero_init_residual=False, arch=None):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(
                f"CifarResNet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110…), got {depth}"
            )
        self.arch = arch or f"resnet{depth}"
        if shortcut not in SHORTCUTS:
            raise ValueError(
                f"{self.arch}: unknown shortcut {shortcut!r}; expected 'A' (zero-padding "
                f"identity, the paper's CIFAR choice), 'B' (1x1 projection) or "
                f"'plain' (none)"
            )
        self.shortcut = shortcut
        self.default_input_size, self.min_input_size = (3, 32, 32), 1
        n = (depth - 2) // 6
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for i, planes in enumerate((16, 32, 64)):
            layer, inplanes = _make_layer(
                BasicBlock, inplanes, planes, n, 1 if i == 0 else 2, shortcut
            )
            setattr(self, f"layer{i + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self, zero_init_residual)

    def forward(self, x):
        check_input(self, x, self.min_input_size)
        x = batch_norm_relu(self.bn1, self.relu, self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def _named(build, arch, doc):
    build.__name__ = build.__qualname__ = arch
    build.__doc__ = doc
    return register_model("resnet")(build)


def _imagenet(arch, block, layers, doc):
    """The ImageNet builder ``arch``: ``block`` x ``layers`` (Table 1)."""

    def build(num_classes: int = 1000, variant: str = "torchvision", **kwargs) -> ResNet:
        return ResNet(block, layers, num_classes=num_classes, variant=variant, arch=arch, **kwargs)

    return _named(build, arch, doc)


def _cifar(depth, doc):
    """The CIFAR builder ``resnet<depth>`` (sec. 4.2: 6n + 2 layers)."""

    def build(num_classes: int = 10, shortcut: str = "A", **kwargs) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, shortcut=shortcut, **kwargs)

    return _named(build, f"resnet{depth}", doc)


resnet18 = _imagenet("resnet18", BasicBlock, [2, 2, 2, 2], "ResNet-18: BasicBlock x [2, 2, 2, 2].")
resnet34 = _imagenet("resnet34", BasicBlock, [3, 4, 6, 3], "ResNet-34: BasicBlock x [3, 4, 6, 3].")
resnet50 = _imagenet(
    "resnet50",
    Bottleneck,
    [3, 4, 6, 3],
    'ResNet-50: Bottleneck x [3, 4, 6, 3]; ``variant="paper"`` strides in the first 1x1.',
)
resnet101 = _imagenet(
    "resnet101", Bottleneck, [3, 4, 23, 3], "ResNet-101: Bottleneck x [3, 4, 23, 3]."
)
resnet152 = _imagenet(
    "resnet152", Bottleneck, [3, 8, 36, 3], "ResNet-152: Bottleneck x [3, 8, 36, 3]."
)

resnet20 = _cifar(
    20, 'CIFAR ResNet-20 (n=3); ``shortcut="A"`` zero-padding identity (paper), ``"B"`` projection.'
)
resnet32 = _cifar(32, "CIFAR ResNet-32 (n=5).")
resnet44 = _cifar(44, "CIFAR ResNet-44 (n=7).")
resnet56 = _cifar(56, "CIFAR ResNet-56 (n=9).")
resnet110 = _cifar(110, "CIFAR ResNet-110 (n=18).")
