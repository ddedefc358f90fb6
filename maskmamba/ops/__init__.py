"""Kernels: the selective scan and attention, each with a plain-PyTorch reference beside its fast paths."""

from .attention import FLASH_ATTN_AVAILABLE, attention, attention_backend, attention_ref
from .selective_scan import (
    MAMBA_SSM_AVAILABLE,
    scan_backend,
    selective_scan,
    selective_scan_ref,
    selective_scan_torch,
)

__all__ = [
    "FLASH_ATTN_AVAILABLE",
    "MAMBA_SSM_AVAILABLE",
    "attention",
    "attention_backend",
    "attention_ref",
    "scan_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
]
