"""The models and their registry (``create_model``, ``list_models``, ``model_class``, ``register_model``).

Importing the package imports every model module, which registers itself in ``_registry``.
"""

from gaze.models import baseline, cal, gat, ggcam, gradia, kfn, pim  # noqa: F401  (fill the registry)
from gaze.models._registry import create_model, list_models, model_class, register_model

__all__ = ["create_model", "list_models", "model_class", "register_model"]
