"""Models: the zoo (``zoo.py``), the contract every model honours (``base.py``), and the deployable
modules rebuilt from their architecture spec (``architecture.py``, ``shared_head.py``).

Importing the package registers every deployable architecture, so a checkpoint loads with the models
package alone.
"""

from __future__ import annotations

from compress.models.architecture import ARCHITECTURES, architecture_of, build_architecture
from compress.models.base import ClassifierModel, ModelSpec, count_parameters
from compress.models.cost import deployed_cost, format_cost
from compress.models.projector import PROJECTORS, Projector, build_projector
from compress.models.shared_head import Branch, SharedHeadStudent, align_maps, feature_size
from compress.models.zoo import MODELS, build_model, canonical_name, create_model, make_spec, source_of

__all__ = ["ARCHITECTURES", "MODELS", "PROJECTORS", "Branch", "ClassifierModel", "ModelSpec", "Projector",
           "SharedHeadStudent", "align_maps", "architecture_of", "build_architecture", "build_model",
           "build_projector", "canonical_name", "count_parameters", "create_model", "deployed_cost", "feature_size", "format_cost",
           "make_spec", "source_of"]
