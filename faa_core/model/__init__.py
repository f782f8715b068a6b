"""The FAA model: projection heads (align) and the multimodal encoder (fuse)."""

from .config import FAAConfig
from .faa import FAAModel
from .fusion import FusionOutput, MultimodalEncoder
from .heads import ProjectionHeads

__all__ = ["FAAConfig", "FAAModel", "FusionOutput", "MultimodalEncoder", "ProjectionHeads"]
