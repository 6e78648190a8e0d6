"""Distillation methods (one file each) behind one contract (``base.Method``)."""

from compress.distill.base import Method, StepOutput, Supervised

__all__ = ["Method", "StepOutput", "Supervised"]
