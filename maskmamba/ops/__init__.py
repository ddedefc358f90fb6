"""Kernels: the selective scan, attention and the causal conv, each with a plain-PyTorch reference beside its fast
paths."""

from .attention import (
    FLASH_ATTN_AVAILABLE,
    PROBE_TOKENS,
    SDPA_BACKENDS,
    attention,
    attention_backend,
    attention_ref,
    fastest_sdpa,
    use_sdpa_backend,
)
from .causal_conv import CAUSAL_CONV1D_AVAILABLE, causal_conv_silu, causal_conv_silu_ref
from .triton_scan import TRITON_AVAILABLE, ScanConfig, conv_silu, fused_scan
from .selective_scan import (
    MAMBA_SSM_AVAILABLE,
    SCAN_BACKENDS,
    available_scan_backends,
    scan_backend,
    selective_scan,
    selective_scan_ref,
    selective_scan_torch,
    use_scan_backend,
)

__all__ = [
    "CAUSAL_CONV1D_AVAILABLE",
    "FLASH_ATTN_AVAILABLE",
    "MAMBA_SSM_AVAILABLE",
    "PROBE_TOKENS",
    "SDPA_BACKENDS",
    "SCAN_BACKENDS",
    "ScanConfig",
    "TRITON_AVAILABLE",
    "available_scan_backends",
    "causal_conv_silu",
    "causal_conv_silu_ref",
    "conv_silu",
    "fastest_sdpa",
    "fused_scan",
    "attention",
    "attention_backend",
    "attention_ref",
    "scan_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
    "use_scan_backend",
    "use_sdpa_backend",
]
