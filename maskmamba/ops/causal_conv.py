"""Causal depthwise conv + SiLU (Vision Mamba's input convolution): causal-conv1d's CUDA kernel when it imports,
else the plain-PyTorch reference (left-padded F.conv1d)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

try:
    from causal_conv1d import causal_conv1d_fn as _causal_conv1d_fn

    CAUSAL_CONV1D_AVAILABLE = True
except Exception:  # ImportError, or a failing compiled extension
    _causal_conv1d_fn = None
    CAUSAL_CONV1D_AVAILABLE = False


def causal_conv_silu(u: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """silu(causal depthwise conv(u)); u: (b, channels, L), weight: (channels, 1, k), bias: (channels,)."""
    if CAUSAL_CONV1D_AVAILABLE and u.is_cuda:
        return _causal_conv1d_fn(u.contiguous(), weight.squeeze(1), bias, activation="silu")
    return causal_conv_silu_ref(u, weight, bias)


def causal_conv_silu_ref(u: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The reference: each output sees its own and the k-1 earlier positions."""
    return F.silu(F.conv1d(F.pad(u, (weight.shape[-1] - 1, 0)), weight, bias, groups=u.shape[1]))
