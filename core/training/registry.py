"""Model kinds as registered recipes: one table that the stage graph, `--kinds`, `--plan`, the searcher,
the report and `python -m core.training --kind` all read.

A recipe says what a kind is: the kind it reads (its upstream, of the same seed), the grid coordinate it
takes besides the seed (a ratio, α, or none), whether it is a classifier (scored on clean and corrupted
test images, attacked) and has a readout (FEVe on the neural test set), its training config and its
training function, its label and colour in the report, and the comparisons the report makes with it.
Recipes are registered by the modules of `core.training.recipes` with `@register(...)` on their training
function (timm's model registry is the pattern); adding a kind is one recipe and its tests.

This module and the recipe modules import no torch at import time: the sweep driver's flag checks read
the table before any training process exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.errors import ConfigError

GRIDS = ("seed", "ratio", "alpha")


@dataclass(frozen=True)
class Recipe:
    name: str
    label: str                      # in the report and the console
    color: str                      # in the report's figures
    summary: str                    # one line: what the kind is
    config: Callable                # (preset, common: dict, ratio: str) -> TrainConfig
    train: Callable                 # (Job) -> (model, FitResult): builds, fits (through job.fit) and returns it
    families: tuple[str, ...] = ()  # the --family values whose default kinds include it
    upstream: str | None = None     # the kind whose model (of the same seed) it reads
    grid: str = "seed"              # seed | ratio (neural:classification batches) | alpha (similarity weight)
    classifier: bool = True         # scored on TIN-TC and attacked
    readout: bool = False           # predicts the neurons: FEVe and correlations on the neural test set
    feve_positive: bool = False     # a health check: its FEVe must be above 0
    twin: str | None = None         # compared with this kind at the same setting and seed, besides the Baseline
    explained_by: tuple[str, ...] = ()   # simpler explanations it is compared with, by seed (the report's
                                         # "what explains it": a low-pass prior, pixel-derived targets)
    stands_for: str = ""            # as a simpler explanation, what it tests ("a low-pass prior")
    asked: bool = False             # the research question is about it (the report's plain-words answers)
    control: str = ""               # "positive" | "negative": a run-level control of the pipeline
    identity: Callable | None = None  # (preset) -> dict: what identifies a model beyond its config
    after_overrides: Callable | None = None   # (cfg) -> cfg, applied after the user's overrides
    cost: Callable | None = None    # (cfg, sizes, flops per image) -> FLOPs of the fit, for --plan
    synthetic_only: bool = False    # needs the synthetic world's ground truth

    @property
    def family(self) -> str:
        """The lake's `runs.family` of its models."""
        return {"ratio": "mtl", "alpha": "similarity"}.get(self.grid, self.name)


_TABLE: dict[str, Recipe] = {}


def register(**fields) -> Callable:
    """Decorator on a recipe's training function: `@register(name=..., label=..., config=..., ...)`."""
    def deco(train: Callable) -> Callable:
        r = Recipe(train=train, **fields)
        if r.name in _TABLE:
            raise ValueError(f"kind {r.name!r} is registered twice")
        if r.grid not in GRIDS:
            raise ValueError(f"kind {r.name!r}: grid {r.grid!r}; expected one of {GRIDS}")
        _TABLE[r.name] = r
        return train
    return deco


def table() -> dict[str, Recipe]:
    """Every registered kind, in registration order (upstream kinds first)."""
    if not _TABLE:
        import core.training.recipes  # noqa: F401  (registers the kinds)
    return _TABLE


def get(name: str) -> Recipe:
    t = table()
    if name not in t:
        raise ConfigError(f"unknown kind {name!r}; expected one of {', '.join(t)}")
    return t[name]


def names(family: str | None = None) -> tuple[str, ...]:
    """The kinds of a family (all kinds with None), upstream kinds first."""
    t = table()
    if family is None:
        return tuple(t)
    fams = families()
    if family not in fams:
        raise ConfigError(f"--family {family!r}: expected one of {', '.join(fams)}")
    return fams[family]


def families() -> dict[str, tuple[str, ...]]:
    """family -> its kinds; 'both' is the two co-training families together."""
    t = table()
    out = {f: tuple(k for k, r in t.items() if f in r.families) for f in ("mtl", "similarity")}
    out["both"] = tuple(k for k in t if k in set(out["mtl"]) | set(out["similarity"]))
    return out


def chain(name: str) -> list[str]:
    """The kind and its upstream kinds, nearest first."""
    out = [name]
    while get(out[-1]).upstream:
        out.append(get(out[-1]).upstream)
    return out


def stage(name: str) -> int:
    """1 for a kind that reads no other model, 1 + its upstream's stage otherwise."""
    return len(chain(name))


def with_upstream(kinds) -> list[str]:
    """`kinds` plus every upstream kind they need, in the order given, the additions after."""
    out = list(kinds)
    for k in list(out):
        for up in chain(k)[1:]:
            if up not in out:
                out.append(up)
    return out


def classifiers() -> tuple[str, ...]:
    return tuple(k for k, r in table().items() if r.classifier)


def label(name: str) -> str:
    t = table()
    return t[name].label if name in t else name


def color(name: str) -> str | None:
    t = table()
    return t[name].color if name in t else None
