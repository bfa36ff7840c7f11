"""ComfyUI front end: the "AMT VFI" node pack (drop-in for ComfyUI-Frame-Interpolation's AMT node) and
AMT for core's native Frame Interpolate node. Imports nothing from ComfyUI until a node runs."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
