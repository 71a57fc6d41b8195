"""Presets: data, model width and training budget for each scale of run."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.training.cycler import PAPER_RATIOS


@dataclass(frozen=True)
class Preset:
    name: str
    world: str | None             # synthetic world preset; None: real data from --tin-root/--neural-data
    width: float                  # VGG channel multiplier
    batch_size: int
    max_epochs: int               # classification-bearing fits (each Oracle phase too)
    neural_epochs: int            # Monkey Predictor
    readout_epochs: int           # readout on the frozen Oracle core (paper: 10)
    patience: int
    max_reductions: int
    ratios: tuple[str, ...]
    seeds: tuple[int, ...]
    neural_lr: float = 1e-2       # Monkey Predictor Adam lr; see below
    eval_images: int = 0          # cap on test images for TIN-TC (0: all)
    model: str = "vgg19_bn_fc"
    lr: float = 0.1               # SGD lr of classification-bearing fits
    dropout: float = 0.5          # in the two 1x1-conv FC layers of the head (the authors: 0.5)
    readout_lr: float = 0.0       # mtl_*: the readout's own Adam lr (0: SGD with the rest, as the authors)
    augment: bool = True
    # adversarial evaluation of every classifier (core.evaluate.adversarial): PGD on the first
    # adv_images test images with adv_steps steps per epsilon, HopSkipJump on adv_decision_images
    adv_images: int = 0
    adv_steps: int = 10
    adv_decision_images: int = 0
    adv_decision_steps: int = 8
    # the Oracle's corrupted training pool: this many variants of every training image, each a
    # random corruption x severity; a fresh one is drawn each time the image is used (core.training.fit)
    oracle_variants: int = 8


# Short CPU presets (smoke, demo), measured on the demo world: a width-1/16 VGG-19 with the
# paper's augmentation stays at chance for 20 epochs of 1,200 images (a plain 3-layer CNN too);
# on a world with clutter 0.35 and no extra augmentation (the world already draws position,
# rotation and scale) VGG-11 at width 1/16 reaches 0.38 validation accuracy in 8 epochs (16 s).

# The paper's Monkey Predictor uses Adam lr 5e-4 for up to 150 epochs over 24,000 trials. The
# synthetic presets have 10x fewer trials and epochs; at 5e-4 the demo predictor reaches a
# correlation of 0.31 with the true rates after 25 epochs, at 1e-2 it reaches 0.63 after 8
# (measured on the demo world), so the scaled-down presets use 1e-2.


PRESETS = {
    "smoke": Preset("smoke", "smoke", 1 / 16, 32, 2, 2, 1, 1, 5, ("1:2", "2:1"), (0,),
                    model="vgg11_bn_fc", lr=0.05, augment=False, dropout=0.0, readout_lr=1e-2,
                    adv_images=16, adv_steps=2, adv_decision_images=2, adv_decision_steps=2, oracle_variants=2),
    # demo: patience 8 = no LR drop inside the 8-epoch cap; width 1/8, no dropout and the readout's
    # own Adam: see the measurements above
    "demo": Preset("demo", "demo", 1 / 8, 32, 8, 8, 3, 8, 2, ("1:2", "2:1"), (0,),
                   eval_images=100, model="vgg11_bn_fc", lr=0.05, augment=False, dropout=0.0, readout_lr=1e-2,
                   adv_images=50, adv_steps=5, adv_decision_images=8, adv_decision_steps=4),
    "study": Preset("study", "study", 1 / 8, 128, 30, 40, 10, 3, 3, PAPER_RATIOS, (0, 1, 2),
                    adv_images=500, adv_steps=20, adv_decision_images=50, adv_decision_steps=20),
    "paper": Preset("paper", None, 1.0, 128, 400, 150, 10, 5, 5, PAPER_RATIOS, (1000, 2001, 3000, 4000, 5000),
                    neural_lr=5e-4, adv_images=1000, adv_steps=40, adv_decision_images=200, adv_decision_steps=40),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]
