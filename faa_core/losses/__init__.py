"""Training losses: face-voice contrastive (align), matching (fuse), Wen et al. 2021 and its project variant."""

from .fvc import MAX_LOGIT_SCALE, fvc_infonce, fvc_multi_similarity, multi_similarity_loss
from .fvm import fvm_loss, likely_same_person, sample_hard_negatives, sample_negatives
from .wen import (
    CROSS_LOGIT_OFFSET,
    IdentityReweighter,
    WenCurriculum,
    wen2021_loss,
    wen_cross_logit_loss,
    wen_global_loss,
    wen_two_level_loss,
    wen_variant_global_loss,
    wen_variant_local_loss,
    wen_variant_loss,
)

__all__ = [
    "MAX_LOGIT_SCALE",
    "fvc_infonce",
    "multi_similarity_loss",
    "fvc_multi_similarity",
    "sample_hard_negatives",
    "sample_negatives",
    "likely_same_person",
    "fvm_loss",
    "CROSS_LOGIT_OFFSET",
    "wen_global_loss",
    "wen_cross_logit_loss",
    "wen2021_loss",
    "WenCurriculum",
    "wen_variant_global_loss",
    "wen_variant_local_loss",
    "wen_variant_loss",
    "IdentityReweighter",
]
