"""StyleGAN2's fused ops: ``bias_act`` and ``upfirdn2d`` with the filter helpers.

CUDA kernels are compiled on first use (see :mod:`cuda_ops._build`); CPU tensors, bfloat16 and failed builds
take the exact PyTorch reference. rosinality-compatible wrappers live in :mod:`cuda_ops.rosinality`.
"""

from cuda_ops._bias_act import ACTIVATIONS, bias_act, bias_act_ref
from cuda_ops._upfirdn2d import (
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "bias_act_ref",
    "downsample2d",
    "filter2d",
    "setup_filter",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample2d",
]
