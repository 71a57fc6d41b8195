"""The model kinds, one recipe each (core.training.registry). Importing this package registers them, in
this order: kinds that read no other model first."""

from core.training.recipes import classification, neural, oracle, mtl, similarity  # noqa: F401
