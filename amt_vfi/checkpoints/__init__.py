"""Checkpoint handling: find, download, verify, detect the variant, load."""

from .reader import convert_to_safetensors, load_model, read_state_dict, verify_state_dict
from .standin import standin_state_dict
from .store import (
    DOWNLOAD_URL,
    MODELS_ENV,
    OFFICIAL_CHECKPOINTS,
    available_checkpoints,
    download_checkpoint,
    find_checkpoint,
    resolve_checkpoint,
    search_dirs,
    user_cache_dir,
)

__all__ = [
    "DOWNLOAD_URL",
    "MODELS_ENV",
    "OFFICIAL_CHECKPOINTS",
    "available_checkpoints",
    "convert_to_safetensors",
    "download_checkpoint",
    "find_checkpoint",
    "load_model",
    "read_state_dict",
    "resolve_checkpoint",
    "search_dirs",
    "standin_state_dict",
    "user_cache_dir",
    "verify_state_dict",
]
