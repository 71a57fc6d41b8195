"""Fully convolutional VGG with BatchNorm after every conv, for grayscale input.

The conv stack follows torchvision's VGG configurations; the three fully connected layers become
1x1 convolutions (512 -> 4096 -> 4096 -> classes, dropout 0.5 after the first two, as in the
authors' code), followed by a global max-pool. Layers are named `conv{block}_{index}` (each a
conv, BN and ReLU, so `conv3_1` is the output after its BN and ReLU) and `pool{block}`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.vgg import cfgs as TORCHVISION_VGG_CFGS

from core.models.registry import register_model


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(c_in, c_out, 3, padding=1),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(inplace=True),
        ))


def _scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class VGG(nn.Module):
    """VGG conv stack (optionally truncated at `stop_at`) plus the conv classification head."""

    def __init__(self, cfg: list, n_classes: int = 200, in_chans: int = 1, width: float = 1.0,
                 dropout: float = 0.5, stop_at: str | None = None):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        block, index, c = 1, 1, in_chans
        self.channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        stride = 1
        for v in cfg:
            if v == "M":
                name = f"pool{block}"
                layers[name] = nn.MaxPool2d(2, 2)
                stride *= 2
                block, index = block + 1, 1
            else:
                name = f"conv{block}_{index}"
                out = _scaled(v, width)
                layers[name] = ConvBNReLU(c, out)
                c, index = out, index + 1
            self.channels[name], self.strides[name] = c, stride
            if name == stop_at:
                break
        self.features = nn.Sequential(layers)
        self.layer_names = list(layers)
        self.n_classes = n_classes if stop_at is None else 0
        if stop_at is None:
            h = _scaled(4096, width)
            self.head = nn.Sequential(OrderedDict(
                fc6=nn.Conv2d(c, h, 1), relu6=nn.ReLU(inplace=True), drop6=nn.Dropout(dropout),
                fc7=nn.Conv2d(h, h, 1), relu7=nn.ReLU(inplace=True), drop7=nn.Dropout(dropout),
                fc8=nn.Conv2d(h, n_classes, 1),
            ))
        else:
            self.head = None
        self.reset_parameters(self)

    @staticmethod
    def reset_parameters(module: nn.Module) -> None:
        """Kaiming (fan-out) for every conv followed by a ReLU, N(0, 0.01) for the class layer fc8,
        BN weight 1 and bias 0. torchvision puts N(0, 0.01) on all three FC layers; through three
        stacked layers that gives near-zero logits and gradients, which long ImageNet runs outgrow but
        short CPU runs never leave (measured: chance accuracy after 6 demo epochs), so only the
        output layer keeps it; a Kaiming fc8 under the global max-pool starts at a loss of 7."""
        for name, m in module.named_modules():
            if isinstance(m, nn.Conv2d) and name.split(".")[-1] == "fc8":
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def forward_intermediates(self, x: torch.Tensor, names: list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Outputs of the named layers (B, C, H, W); stops after the last one asked for."""
        unknown = [n for n in names if n not in self.layer_names]
        if unknown:
            raise KeyError(f"unknown layer {unknown[0]!r}; this model has {', '.join(self.layer_names)}")
        wanted, out = set(names), {}
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def forward_from(self, x: torch.Tensor, after: str) -> torch.Tensor:
        """Continue the forward pass from the output of layer `after` to the class logits."""
        i = self.layer_names.index(after)
        for layer in list(self.features.children())[i + 1:]:
            x = layer(x)
        return self.forward_head(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats).amax(dim=(2, 3))  # global max-pool -> (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("this VGG was truncated (stop_at) and has no classification head")
        return self.forward_head(self.features(x))

    def feature_shape(self, name: str, image_size: int) -> tuple[int, int, int]:
        s = image_size // self.strides[name]
        return self.channels[name], s, s


@register_model
def vgg19_bn_fc(n_classes: int = 200, in_chans: int = 1, width: float = 1.0, dropout: float = 0.5,
                stop_at: str | None = None) -> VGG:
    """VGG-19 with BN, FC layers as 1x1 convs; `width` scales every channel count (1.0 = the paper)."""
    return VGG(TORCHVISION_VGG_CFGS["E"], n_classes, in_chans, width, dropout, stop_at)


@register_model
def vgg11_bn_fc(n_classes: int = 200, in_chans: int = 1, width: float = 1.0, dropout: float = 0.5,
                stop_at: str | None = None) -> VGG:
    """VGG-11 with BN (configuration A): a shallower core for quick experiments."""
    return VGG(TORCHVISION_VGG_CFGS["A"], n_classes, in_chans, width, dropout, stop_at)
