"""GoogLeNet (Inception v1) and Inception-v3: parallel multi-scale branches concatenated.

Auxiliary classifiers exist only to help training: in eval mode both networks return plain
logits, in training mode (with aux heads) a NamedTuple that also carries the aux logits.
Parameter names and shapes match torchvision, so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deploykit.data.config import DataConfig
from deploykit.models.registry import register_model


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output of GoogLeNet with aux heads (torchvision's field order)."""

    logits: Tensor
    aux_logits2: Tensor | None
    aux_logits1: Tensor | None


class InceptionOutputs(NamedTuple):
    """Training-mode output of Inception-v3 with its aux head."""

    logits: Tensor
    aux_logits: Tensor | None


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU: the unit every Inception branch is built of."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _transform_input(x: Tensor) -> Tensor:
    """Re-normalise ImageNet-normalised input to the [-1, 1] scaling Google's original weights expect."""
    x0 = x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x1 = x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x0, x1, x2), 1)


# --------------------------------------------------------------------------------------------
# GoogLeNet
# --------------------------------------------------------------------------------------------


class Inception(nn.Module):
    """GoogLeNet module: 1x1, 1x1->3x3, 1x1->3x3 ("5x5"), pool->1x1 branches, concatenated.

    Looking at several receptive fields at once; the 1x1 reductions keep it affordable. The
    "5x5" branch uses a 3x3 kernel, as torchvision's (and its checkpoints') does.
    """

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        # N x (ch1x1 + ch3x3 + ch5x5 + pool_proj) x H x W
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNetAux(nn.Module):
    """Auxiliary classifier on an intermediate map (4x4 pool, 1x1 conv, two FC): extra gradient."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))  # N x 128 x 4 x 4
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)  # N x 1024
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """Stem convs and pools, inception 3a-3b, 4a-4e, 5a-5b, global pool, dropout, linear classifier."""

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 192 x H/8 x W/8

        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)  # -> 256
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)  # -> 480
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 480 x H/16 x W/16

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)  # -> 512
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)  # -> 512
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)  # -> 512
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)  # -> 528
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)  # -> 832
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # N x 832 x H/32 x W/32

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)  # -> 832
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)  # -> 1024

        self.aux1: GoogLeNetAux | None = None
        self.aux2: GoogLeNetAux | None = None
        if aux_logits:
            self.aux1 = GoogLeNetAux(512, num_classes, dropout=dropout_aux)  # taps inception4a
            self.aux2 = GoogLeNetAux(528, num_classes, dropout=dropout_aux)  # taps inception4d

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.num_features = 1024

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.transform_input:
            x = _transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)  # N x 512 x H/16 x W/16
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # N x 528 x H/16 x W/16
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))  # N x 1024 x H/32 x W/32
        return x, aux1, aux2

    def forward_features(self, x: Tensor) -> Tensor:
        """Everything before the global pool: N x 1024 x H/32 x W/32."""
        return self._forward(x)[0]

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool, dropout and classifier: N x num_classes logits."""
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        x, aux1, aux2 = self._forward(x)
        logits = self.forward_head(x)
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits


# --------------------------------------------------------------------------------------------
# Inception-v3
# --------------------------------------------------------------------------------------------


class InceptionA(nn.Module):
    """35x35 module: 1x1, 1x1->5x5, 1x1->3x3->3x3 and avgpool->1x1 branches (Mixed_5b-5d)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)  # N x (224 + pool_features) x H x W


class InceptionB(nn.Module):
    """Grid reduction 35->17 (Mixed_6a): strided 3x3, strided 1x1->3x3->3x3 and max pool, concatenated."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)  # N x (480 + C_in) x H/2 x W/2


class InceptionC(nn.Module):
    """17x17 module (Mixed_6b-6e): 7x7 convolutions factorised into 1x7 and 7x1 pairs."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)  # N x 768 x H x W


class InceptionD(nn.Module):
    """Grid reduction 17->8 (Mixed_7a): strided 3x3 after 1x1, and after 1x7/7x1, plus max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)  # N x 1280 x H/2 x W/2


class InceptionE(nn.Module):
    """8x8 module (Mixed_7b-7c): 3x3 branches split into parallel 1x3 and 3x1, widening the output."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)  # N x 768
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)  # N x 768
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)  # N x 2048 x H x W


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 map (5x5/3 pool, 1x1, 5x5 conv, FC): extra training signal.

    Its 5x5 convolution needs the 17x17 map of a >=295 px input, so it only works near 299 px.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01  # type: ignore[assignment]
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001  # type: ignore[assignment]

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)  # N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))  # N x 768 x 1 x 1
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


class Inception3(nn.Module):
    """Inception-v3: stem, InceptionA x3, B, C x4, D, E x2, global pool, dropout, classifier."""

    def __init__(
        self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)  # N x 32 x 149 x 149
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)  # N x 32 x 147 x 147
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)  # N x 64 x 147 x 147
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)  # N x 64 x 73 x 73
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)  # N x 80 x 73 x 73
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)  # N x 192 x 71 x 71
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)  # N x 192 x 35 x 35
        self.Mixed_5b = InceptionA(192, pool_features=32)  # N x 256 x 35 x 35
        self.Mixed_5c = InceptionA(256, pool_features=64)  # N x 288 x 35 x 35
        self.Mixed_5d = InceptionA(288, pool_features=64)  # N x 288 x 35 x 35
        self.Mixed_6a = InceptionB(288)  # N x 768 x 17 x 17
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)  # N x 768 x 17 x 17
        self.AuxLogits: InceptionAux | None = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)  # N x 1280 x 8 x 8
        self.Mixed_7b = InceptionE(1280)  # N x 2048 x 8 x 8
        self.Mixed_7c = InceptionE(2048)  # N x 2048 x 8 x 8
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        self.num_features = 2048

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = float(getattr(m, "stddev", 0.1))
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.transform_input:
            x = _transform_input(x)
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x, aux

    def forward_features(self, x: Tensor) -> Tensor:
        """Everything before the global pool: N x 2048 x 8 x 8 at 299 px."""
        return self._forward(x)[0]

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool, dropout and classifier: N x num_classes logits."""
        return self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))

    def forward(self, x: Tensor) -> Tensor | InceptionOutputs:
        x, aux = self._forward(x)
        logits = self.forward_head(x)
        if self.training and self.aux_logits:
            return InceptionOutputs(logits, aux)
        return logits


@register_model("inception", auxiliary_prefixes=("aux1.", "aux2."))
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet (Inception v1); aux heads off by default (``aux_logits=True`` to train with them)."""
    return GoogLeNet(**kwargs)


@register_model(
    "inception",
    data_config=DataConfig(input_size=(3, 299, 299), interpolation="bilinear", crop_pct=0.875),
    auxiliary_prefixes=("AuxLogits.",),
)
def inception_v3(**kwargs: Any) -> Inception3:
    """Inception-v3 at 299 px with its aux head (used only in training; 75 px minimum input)."""
    return Inception3(**kwargs)
