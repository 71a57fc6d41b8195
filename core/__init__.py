"""The science of neural co-training: data, models, training, evaluation, results.

Importable and testable without Ray; `sweeps/` wraps these functions for Ray Tune and Ray Train.
"""
