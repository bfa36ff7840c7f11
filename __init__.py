"""ComfyUI custom-node entry point: ComfyUI imports this folder as a package.

Nodes: "AMT VFI" (drop-in for ComfyUI-Frame-Interpolation's node), "Make Interpolation State List",
"VFI FloatToInt", "VFI Schedule From Text", and "AMT Model Loader" for core's Frame Interpolate node.
See the "ComfyUI" section of README.md.
"""

from .amt_vfi.comfy.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
