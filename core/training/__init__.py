"""Training: losses, the ratio cycler, the fit loop (`core.training.fit`), and the paper's model kinds.

Kept import-light on purpose: importing a small submodule (the cycler, the config) must not pull in
torch and torchvision, which every Ray trial process would then pay for.
"""
