"""Tensors a fit needs, resident on the model's device (uint8 images; airbench style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def as_u8(images) -> torch.Tensor:
    """(N, H, W) uint8 array -> (N, 1, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))[:, None]


def pixel_stats(images) -> tuple[float, float]:
    """Mean and std of pixel values in [0, 1] units (float64 accumulation)."""
    x = np.asarray(images)
    mean = float(x.mean(dtype=np.float64) / 255.0)
    std = float(np.sqrt(((x.astype(np.float64) / 255.0 - mean) ** 2).mean()))
    return mean, std


@dataclass
class NeuralBatchSource:
    """Images with per-neuron targets and a mask; `x` indexes into the image tensor."""

    images: torch.Tensor            # (P, 1, H, W) uint8
    index: torch.Tensor             # (T,) int64 image of each trial
    targets: torch.Tensor           # (T, K) float32
    mask: torch.Tensor              # (T, K) bool

    def __len__(self):
        return int(self.index.shape[0])

    def to(self, device):
        return NeuralBatchSource(*(t.to(device) for t in (self.images, self.index, self.targets, self.mask)))

    def subset(self, rows: np.ndarray) -> "NeuralBatchSource":
        r = torch.as_tensor(rows, dtype=torch.long)
        return NeuralBatchSource(self.images, self.index[r], self.targets[r], self.mask[r])


@dataclass
class TrainData:
    """Everything a fit reads. Absent parts are None (e.g. no classification for the Monkey Predictor)."""

    n_classes: int = 0
    cls: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None     # split -> (x u8 (N,1,H,W), y)
    neural_train: NeuralBatchSource | None = None
    neural_val: NeuralBatchSource | None = None
    neural_test: dict | None = None     # images u8 (M,1,H,W), responses (M,R,K), mask, true_rates (numpy)
    corrupted: torch.Tensor | None = None   # (V, N, 1, H, W) u8: V corrupted variants of every cls train image
    sim_pool: object | None = None      # core.training.similarity.SimilarityPool (mode similarity)
    # how a co-training fit normalises its neural batches: "batch", with their own statistics in BatchNorm's
    # training mode (the authors' choice, both tasks' batches alike: right where the neural images are drawn
    # like the classification images); "running", with the running statistics the classification batches
    # keep, which evaluation uses too (neural images of another kind, e.g. the recording's degraded stimuli)
    neural_bn: str = "batch"

    def __post_init__(self):
        if self.neural_bn not in ("batch", "running"):
            raise ValueError(f"neural_bn={self.neural_bn!r}; expected 'batch' or 'running'")

    @property
    def n_neurons(self) -> int:
        return int(self.neural_train.targets.shape[1]) if self.neural_train is not None else 0

    @property
    def image_size(self) -> int:
        src = self.cls["train"][0] if self.cls else self.neural_train.images
        return int(src.shape[-1])

    def nbytes(self) -> int:
        """What the fit would hold on its device."""
        parts = [t for pair in (self.cls or {}).values() for t in pair]
        for src in (self.neural_train, self.neural_val):
            if src is not None:
                parts += [src.images, src.index, src.targets, src.mask]
        if self.corrupted is not None:
            parts.append(self.corrupted)
        return int(sum(t.numel() * t.element_size() for t in parts))

    def to(self, device) -> "TrainData":
        cls = {s: (x.to(device), y.to(device)) for s, (x, y) in self.cls.items()} if self.cls else None
        return TrainData(
            self.n_classes, cls,
            self.neural_train.to(device) if self.neural_train is not None else None,
            self.neural_val.to(device) if self.neural_val is not None else None,
            self.neural_test,
            self.corrupted.to(device) if self.corrupted is not None else None,
            self.sim_pool.to(device) if self.sim_pool is not None else None,
            self.neural_bn,
        )


class NeuralStream:
    """Endless shuffled batches of trial indices; its state is checkpointed."""

    def __init__(self, n: int, batch: int, gen: torch.Generator):
        self.n, self.batch, self.gen = n, min(batch, n), gen
        self.perm, self.pos = torch.randperm(n, generator=gen), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state(self):
        return {"perm": self.perm.clone(), "pos": self.pos}

    def load(self, s):
        self.perm, self.pos = s["perm"], s["pos"]
