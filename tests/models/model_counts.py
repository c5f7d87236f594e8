"""Parameter counts by hand (the papers' layer tables, written out) and torchvision's published
numbers, for tests/models/test_models.py."""


def conv(c_in, c_out, k, bias=True, bn=False, groups=1):
    """Weights (c_out, c_in/groups, k, k) + bias (c_out) + BatchNorm weight and bias (2·c_out)."""
    return c_out * (c_in // groups) * k * k + (c_out if bias else 0) + (2 * c_out if bn else 0)


def fc(n_in, n_out):
    return n_in * n_out + n_out


# Paper AlexNet, written out (sec. 3.5, Figure 2): conv2, conv4, conv5 see only their own tower's
# half of the input channels (groups=2); conv3 and the FC layers see both towers.
PAPER_ALEXNET = (
    conv(3, 96, 11)
    + conv(96, 256, 5, groups=2)
    + conv(256, 384, 3)
    + conv(384, 384, 3, groups=2)
    + conv(384, 256, 3, groups=2)
    + fc(256 * 6 * 6, 4096)
    + fc(4096, 4096)
    + fc(4096, 1000)
)

# GoogLeNet Table 1: (in_channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
TABLE1 = [
    (192, 64, 96, 128, 16, 32, 32),
    (256, 128, 128, 192, 32, 96, 64),
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
    (832, 256, 160, 320, 32, 128, 128),
    (832, 384, 192, 384, 48, 128, 128),
]


def googlenet_params(paper, aux, num_classes=1000):
    """Paper: convs with bias, true 5x5. torchvision: conv (no bias) + BN, 3x3 in the "5x5"
    branch."""
    kw = dict(bias=paper, bn=not paper)
    k5 = 5 if paper else 3
    total = conv(3, 64, 7, **kw) + conv(64, 64, 1, **kw) + conv(64, 192, 3, **kw)
    for c_in, c1, c3r, c3, c5r, c5, pp in TABLE1:
        total += (
            conv(c_in, c1, 1, **kw)
            + conv(c_in, c3r, 1, **kw)
            + conv(c3r, c3, 3, **kw)
            + conv(c_in, c5r, 1, **kw)
            + conv(c5r, c5, k5, **kw)
            + conv(c_in, pp, 1, **kw)
        )
    total += fc(1024, num_classes)
    if aux:  # on inception4a (512 channels) and 4d (528): 1x1 conv 128, FC 2048 -> 1024 -> classes
        total += sum(
            conv(c, 128, 1, **kw) + fc(128 * 4 * 4, 1024) + fc(1024, num_classes)
            for c in (512, 528)
        )
    return total


def cifar_resnet_params(depth, shortcut="A", num_classes=10):
    """Sec. 4.2: conv 3x3 16, three stages of (depth-2)/6 BasicBlocks (16, 32, 64), FC."""
    n, c_in = (depth - 2) // 6, 16
    total = conv(3, 16, 3, bias=False, bn=True)
    for planes in (16, 32, 64):
        for _ in range(n):
            total += conv(c_in, planes, 3, bias=False, bn=True) + conv(
                planes, planes, 3, bias=False, bn=True
            )
            if shortcut == "B" and c_in != planes:
                total += conv(c_in, planes, 1, bias=False, bn=True)
            c_in = planes
    return total + fc(64, num_classes)


def densenet_params(block_config, k, stem_channels, cifar, num_classes):
    """BN-ReLU-1x1 (4k)-BN-ReLU-3x3 (k) layers, transitions BN + 1x1 halving, final BN + FC."""
    c = stem_channels
    total = conv(3, c, 3, bias=False) if cifar else conv(3, c, 7, bias=False, bn=True)
    for i, n in enumerate(block_config):
        for _ in range(n):
            total += 2 * c + conv(c, 4 * k, 1, bias=False, bn=True) + conv(4 * k, k, 3, bias=False)
            c += k
        if i < len(block_config) - 1:
            total += 2 * c + conv(c, c // 2, 1, bias=False)
            c //= 2
    return total + 2 * c + fc(c, num_classes)


# torchvision's published num_params (googlenet: the pretrained model, without aux heads).
TORCHVISION_COUNTS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}
