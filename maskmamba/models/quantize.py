"""Weight-only int8 storage with per-output-channel scales: a generator ships in a quarter of its fp32 size.

Matrices (linear, embedding and conv weights) are stored as int8 with one fp16 scale per output channel;
every other tensor (norms, biases, SSM parameters) stays float32. Loading dequantises to float32.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

INT8_FILE = "model.int8.safetensors"
SCALE_SUFFIX = ".int8_scale"
MIN_NUMEL = 4096  # smaller tensors gain nothing from int8


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """state dict -> tensors for INT8_FILE (int8 + per-row scale for large matrices, float32 otherwise)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().float().cpu()
        if tensor.ndim >= 2 and tensor.numel() >= MIN_NUMEL:
            rows = tensor.reshape(tensor.shape[0], -1)
            scale = (rows.abs().amax(dim=1) / 127).clamp(min=1e-12).half()
            out[name] = (rows / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            out[name + SCALE_SUFFIX] = scale
        else:
            out[name] = tensor.contiguous()
    return out


def dequantize_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of quantize_state, to float32."""
    state = {}
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if tensor.dtype == torch.int8:
            scale = tensors[name + SCALE_SUFFIX].float()
            tensor = (tensor.reshape(tensor.shape[0], -1).float() * scale[:, None]).reshape(tensor.shape)
        state[name] = tensor
    return state


def save_int8(model: nn.Module, folder: str | Path) -> Path:
    """save_pretrained's config.json beside an int8 weights file (no float model.safetensors)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    path = folder / INT8_FILE
    save_file(quantize_state(model.state_dict()), str(path), metadata={"format": "int8 weight-only, per-row fp16 scales"})
    return path


def load_int8(model: nn.Module, folder: str | Path) -> nn.Module:
    """Load folder's dequantised int8 weights into `model` (built from the same config) and return it."""
    model.load_state_dict(dequantize_state(load_file(str(Path(folder) / INT8_FILE))))
    return model
