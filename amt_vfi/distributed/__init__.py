"""Scale-out over Ray: long clips cut into chunks and many clips, rendered by model-holding workers.

The output is the single-process output: chunks overlap by the one frame their last pair needs, and
are joined by remuxing (video) or renaming (image folders). Ray is imported only when a job runs, so
this package imports without it; see the "Scale-out" section of README.md.
"""

from ..pipeline import JobSettings, Timing
from .chunks import DEFAULT_CHUNK_FRAMES, Chunk, choose_boundaries, make_chunks
from .clips import expand_batch, is_batch
from .runner import ChunkEvent, ClipReport, DistributedReport, interpolate_distributed

__all__ = [
    "DEFAULT_CHUNK_FRAMES",
    "Chunk",
    "ChunkEvent",
    "ClipReport",
    "DistributedReport",
    "JobSettings",
    "Timing",
    "choose_boundaries",
    "expand_batch",
    "interpolate_distributed",
    "is_batch",
    "make_chunks",
]
