"""Models: the zoo (``zoo.py``), the contract every model honours (``base.py``), and the deployable
modules rebuilt from their architecture spec (``architecture.py``, ``shared_head.py``).

The names below load from their modules on first use (``compress._lazy``): the zoo's table and the
projector kinds are read without torch. Loading ``architecture`` registers every deployable architecture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress._lazy import lazy_names

if TYPE_CHECKING:
    from compress.models.architecture import ARCHITECTURES, architecture_of, build_architecture
    from compress.models.base import ClassifierModel, ModelSpec, count_parameters
    from compress.models.cost import deployed_cost, format_cost
    from compress.models.projector import Projector, build_projector
    from compress.models.projector_kinds import PROJECTORS
    from compress.models.shared_head import Branch, SharedHeadStudent, align_maps, feature_size
    from compress.models.zoo import MODELS, build_model, canonical_name, create_model, make_spec, source_of

__getattr__, __all__ = lazy_names(__name__, {
    "architecture": ("ARCHITECTURES", "architecture_of", "build_architecture"),
    "base": ("ClassifierModel", "ModelSpec", "count_parameters"),
    "cost": ("deployed_cost", "format_cost"),
    "projector": ("Projector", "build_projector"),
    "projector_kinds": ("PROJECTORS",),
    "shared_head": ("Branch", "SharedHeadStudent", "align_maps", "feature_size"),
    "zoo": ("MODELS", "build_model", "canonical_name", "create_model", "make_spec", "source_of"),
})
