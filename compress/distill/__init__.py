"""Distillation methods behind one contract (``base.Method``), one module each.

``methods.METHODS`` is the table of methods (name -> class, settings, summary), ``configs.py`` their
settings; both torch-free, so the command line and the recipe schema read them without torch. The
names below load from their modules on first use (``compress._lazy``). ``build_method(config,
student, teachers)`` (``build.py``) is the single factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress._lazy import lazy_names

if TYPE_CHECKING:
    from compress.distill.atsc import ATSC
    from compress.distill.base import Method, StepOutput, Supervised
    from compress.distill.build import build_method, check_teachers
    from compress.distill.config import (PRESETS, DistillConfig, resolve_preset, scaled_lr, settings_table,
                                         training_defaults)
    from compress.distill.configs import ATSCConfig, KDConfig, SharedHeadConfig, SupervisedConfig
    from compress.distill.kd import KD
    from compress.distill.methods import METHODS
    from compress.distill.settings import MethodConfig
    from compress.distill.simkd import SimKD
    from compress.models.cost import deployed_cost, format_cost
    from compress.models.projector import Projector, build_projector
    from compress.models.projector_kinds import PROJECTORS
    from compress.models.shared_head import SharedHeadStudent

__getattr__, __all__ = lazy_names(__name__, {
    "atsc": ("ATSC",),
    "base": ("Method", "StepOutput", "Supervised"),
    "build": ("build_method", "check_teachers"),
    "config": ("PRESETS", "DistillConfig", "resolve_preset", "scaled_lr", "settings_table", "training_defaults"),
    "configs": ("ATSCConfig", "KDConfig", "SharedHeadConfig", "SupervisedConfig"),
    "kd": ("KD",),
    "methods": ("METHODS",),
    "settings": ("MethodConfig",),
    "simkd": ("SimKD",),
    # the models that distillation builds, named here too
    "compress.models.cost": ("deployed_cost", "format_cost"),
    "compress.models.projector": ("Projector", "build_projector"),
    "compress.models.projector_kinds": ("PROJECTORS",),
    "compress.models.shared_head": ("SharedHeadStudent",),
})
