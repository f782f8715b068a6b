"""Training losses: face-voice contrastive (align), matching (fuse) and the Wen et al. baseline."""

from .fvc import MAX_LOGIT_SCALE, fvc_infonce, fvc_multi_similarity, multi_similarity_loss
from .fvm import fvm_loss, sample_hard_negatives
from .wen import IdentityReweighter, wen_global_loss, wen_local_loss, wen_two_level_loss

__all__ = [
    "MAX_LOGIT_SCALE",
    "fvc_infonce",
    "multi_similarity_loss",
    "fvc_multi_similarity",
    "sample_hard_negatives",
    "fvm_loss",
    "wen_global_loss",
    "wen_local_loss",
    "wen_two_level_loss",
    "IdentityReweighter",
]
