"""What every fit does the same way, whatever its kind: random streams, the learning-rate schedule, and
the BatchNorm statistics a model is evaluated with.

Random streams. Each source of randomness has its own generator, derived from the seed and a name, so
that seed s of every kind starts from the same weights (core.training.kinds seeds the initialisation)
and sees the same classification batches in the same order and under the same augmentation: a
co-trained model's extra neural batches draw from a stream of their own and shift nothing else.
Kinds can then be compared within a seed (analysis.precision).

Schedules. `plateau` is the authors': ReduceLROnPlateau on the validation metric, the best weights
restored at each drop, stop after `max_reductions` drops. `cosine` is the short presets' quiet recipe:
a linear warm-up over the first `warmup` share of its steps, then a cosine from the learning rate to zero at `max_epochs`,
per optimizer step, for every optimizer of the fit (the readout's own Adam and the learned loss
weights included); the fit is then evaluated on its final weights (`select` final).

BatchNorm statistics. Training leaves running statistics that depend on the kind: a co-trained
model's neural batches update the layers up to its readout (unless they are normalised with the running
statistics: TrainData.neural_bn, MTL-True), and a frozen layer keeps whatever it had.
Before the model is evaluated, every kind recomputes them the same way: one no-grad pass over the same
fixed training images (`bn_images` of them, the kind's own input and augmentation), as a cumulative
average. With final weights that is before the last epoch's validation (the earlier ones only show
progress); where the best epoch may be kept, before every validation.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

SCHEDULES = ("plateau", "cosine")
SELECTIONS = ("best", "final")
BN_SUBSET_SEED = 0      # the fixed training images of the BatchNorm pass: the same for every kind and seed


def stream_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one named random stream of a fit (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") >> 1


class Streams:
    """The fit's generators by name; `state()` and `load()` checkpoint them all."""

    CPU_STREAMS = ("batches", "neural", "similarity", "variants")

    def __init__(self, seed: int, device: torch.device):
        self.g = {name: torch.Generator().manual_seed(stream_seed(seed, name)) for name in self.CPU_STREAMS}
        for name in ("augment", "readout"):
            self.g[name] = torch.Generator(device=device).manual_seed(stream_seed(seed, name))
        self.global_seed = stream_seed(seed, "dropout")   # torch's global generator: dropout

    def __getitem__(self, name: str) -> torch.Generator:
        return self.g[name]

    def state(self) -> dict:
        return {name: g.get_state() for name, g in self.g.items()}

    def load(self, state: dict) -> None:
        for name, s in state.items():
            self.g[name].set_state(s.cpu())


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate after `step` optimizer steps: linear warm-up from 1/warmup
    to 1, then a cosine to 0 at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1 + math.cos(math.pi * t))


def step_schedulers(optimizers: list[torch.optim.Optimizer], total_steps: int, warmup_steps: int):
    """One LambdaLR per optimizer, all on the same cosine; stepped after every optimizer step."""
    return [torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, total_steps, warmup_steps)) for o in optimizers]


def bn_subset(n: int, size: int) -> torch.Tensor:
    """The fixed training images of the BatchNorm pass: a seeded subset (training sets may be sorted by class)."""
    g = torch.Generator().manual_seed(BN_SUBSET_SEED)
    return torch.randperm(n, generator=g)[:min(n, size)].sort().values


def batchnorms(model: nn.Module, skip: set[int] = frozenset()) -> list[nn.Module]:
    """The BatchNorm layers of `model`, but those whose id() is in `skip`."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in skip]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x_u8: torch.Tensor, batch: int, prepare, amp: bool,
                        skip: set[int] = frozenset()) -> None:
    """Reset the BatchNorm layers of `model` (but those whose id() is in `skip`) and average their
    statistics over `x_u8` (uint8 (N, 1, H, W), on the model's device or in host memory) in one pass, batches of `batch`,
    each turned into the model's input by `prepare(x_u8, generator)` (the kind's own training input, its
    augmentation drawn from a fixed generator: the same images every time). Dropout and everything else
    stays in eval mode; the model is left in eval mode."""
    bns = batchnorms(model, skip)
    if not bns or len(x_u8) == 0:
        return
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(BN_SUBSET_SEED)
    momentum = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None            # cumulative average over the pass
        m.train()
    try:
        for a in range(0, len(x_u8), batch):
            x = prepare(x_u8[a:a + batch], gen)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                model.core.features(x)
    finally:
        for m, mom in zip(bns, momentum):
            m.momentum = mom
        model.eval()
