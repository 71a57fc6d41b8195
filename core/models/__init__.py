"""Models: VGG cores (by name), the Gaussian readout, and the multi-task assembly."""

from core.models import vgg  # noqa: F401  (registers the models)
from core.models.mtl import MultiTaskModel, build_model
from core.models.readouts import GaussianReadout, positive_rate
from core.models.registry import create_model, list_models

__all__ = ["GaussianReadout", "MultiTaskModel", "build_model", "create_model", "list_models", "positive_rate"]
