"""Evaluation of depth and surface-normal predictions against real measured depth."""

from .metrics import DEPTH_METRICS, NORMAL_METRICS, depth_metrics, normal_metrics
from .normals_gt import normals_from_plane_fit

__all__ = ["DEPTH_METRICS", "NORMAL_METRICS", "depth_metrics", "normal_metrics", "normals_from_plane_fit"]
