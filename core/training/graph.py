"""Views of the kind registry (core.training.registry) that the sweeps and the analysis read by name;
light to import (no torch): the sweep driver's flag checks use them."""

from core.training import registry

FAMILIES = registry.families()
MTL_FAMILY, SIM_FAMILY = FAMILIES["mtl"], FAMILIES["similarity"]
KINDS = registry.names()
UPSTREAM = {k: r.upstream for k, r in registry.table().items() if r.upstream}
CLASSIFIERS = registry.classifiers()
SIM_KINDS = tuple(k for k, r in registry.table().items() if r.grid == "alpha")   # swept over alpha x seed
RATIO_CLASSIFIERS = tuple(k for k, r in registry.table().items() if r.grid == "ratio" and r.classifier)   # ratio x seed
