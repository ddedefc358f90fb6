"""Weight storage formats of a generator folder, told apart by file name, beside its config.json.

    fp32  model.safetensors         save_pretrained's float32 weights
    fp16  model.fp16.safetensors    every float tensor in float16 (half the size)
    int8  model.int8.safetensors    weight-only int8, one fp16 scale per output row (a quarter)
    int4  model.int4.safetensors    weight-only int4, one fp16 scale per row and group of GROUP inputs (an eighth,
                                    plus the scales), two values packed per byte

In int8 and int4 only matrices (linear, embedding and conv weights of at least MIN_NUMEL values) are quantized;
every other tensor (norms, biases, SSM parameters, position tables) stays float32. Loading dequantizes to float32.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from maskmamba.checksums import verify, write_sums

FILES = {  # storage format -> weights file, in the order a folder holding several is read (most exact first)
    "fp32": "model.safetensors",
    "fp16": "model.fp16.safetensors",
    "int8": "model.int8.safetensors",
    "int4": "model.int4.safetensors",
}
MIN_NUMEL = 4096  # smaller tensors gain nothing from quantization
GROUP = 64  # int4: inputs that share one scale
INT8_SCALE = ".int8_scale"  # int8: the matrix keeps its shape; its companion holds the row scales
INT4_SCALE, INT4_SHAPE = ".int4_scale", ".int4_shape"  # int4: packed rows, their group scales, the original shape


def _quantizable(tensor: torch.Tensor) -> bool:
    return tensor.ndim >= 2 and tensor.numel() >= MIN_NUMEL and tensor.is_floating_point()


def _int8(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (rows.abs().amax(dim=1) / 127).clamp(min=1e-12).half()
    return (rows / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def _int4(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C) -> packed uint8 (R, ceil(C / GROUP) * GROUP / 2) and fp16 scales (R, groups); zero-padded columns."""
    pad = -rows.shape[1] % GROUP
    groups = torch.nn.functional.pad(rows, (0, pad)).view(rows.shape[0], -1, GROUP)
    scale = (groups.abs().amax(dim=2) / 7).clamp(min=1e-12).half()
    q = (groups / scale.float()[..., None]).round().clamp(-8, 7).to(torch.int16) + 8  # 0..15
    q = q.view(rows.shape[0], -1)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8), scale


def _dequant_int4(packed: torch.Tensor, scale: torch.Tensor, columns: int) -> torch.Tensor:
    q = torch.stack([packed & 15, packed >> 4], dim=-1).view(packed.shape[0], -1).float() - 8
    return (q.view(packed.shape[0], -1, GROUP) * scale.float()[..., None]).view(packed.shape[0], -1)[:, :columns]


def quantize_state(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """A state dict -> the tensors of `storage`'s weights file."""
    check_storage(storage)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().float().cpu().contiguous()
        if storage == "fp16":
            out[name] = tensor.half()
        elif storage == "int8" and _quantizable(tensor):
            rows, out[name + INT8_SCALE] = _int8(tensor.reshape(tensor.shape[0], -1))
            out[name] = rows.reshape(tensor.shape)
        elif storage == "int4" and _quantizable(tensor):
            out[name], out[name + INT4_SCALE] = _int4(tensor.reshape(tensor.shape[0], -1))
            out[name + INT4_SHAPE] = torch.tensor(tensor.shape, dtype=torch.int64)
        else:
            out[name] = tensor
    return out


def dequantize_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of quantize_state, to float32 (the format is read from the dtypes)."""
    state = {}
    for name, tensor in tensors.items():
        if name.endswith((INT8_SCALE, INT4_SCALE, INT4_SHAPE)):
            continue
        if name + INT8_SCALE in tensors:
            rows = tensor.reshape(tensor.shape[0], -1).float() * tensors[name + INT8_SCALE].float()[:, None]
            tensor = rows.reshape(tensor.shape)
        elif name + INT4_SCALE in tensors:
            shape = torch.Size(tensors[name + INT4_SHAPE].tolist())
            tensor = _dequant_int4(tensor, tensors[name + INT4_SCALE], shape.numel() // shape[0]).reshape(shape)
        state[name] = tensor.float()
    return state


def check_storage(storage: str) -> str:
    if storage not in FILES:
        raise ValueError(f"unknown storage format {storage!r}; choose one of: {', '.join(FILES)}")
    return storage


def save_weights(model: nn.Module, folder: str | Path, storage: str = "fp32") -> Path:
    """config.json (save_pretrained's) beside the weights file of `storage`, and SHA256SUMS of every weights file
    there; returns the weights file's path. Weights files of other formats already in `folder` stay, so one
    folder can hold a model in several formats."""
    folder = Path(folder)
    path = folder / FILES[check_storage(storage)]
    if storage == "fp32":
        model.save_pretrained(folder)  # writes the sums too (Generator.save_pretrained)
        return path
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(scratch) / "config.json", folder / "config.json")
    save_file(quantize_state(model.state_dict(), storage), str(path), metadata={"format": storage})
    write_sums(folder)
    return path


def stored_formats(folder: str | Path) -> list[str]:
    """The storage formats whose weights file is in `folder`, most exact first."""
    return [storage for storage, name in FILES.items() if (Path(folder) / name).is_file()]


def load_weights(model: nn.Module, folder: str | Path, storage: str | None = None) -> nn.Module:
    """Load folder's weights of `storage` (default: the most exact one present) into `model` and return it. The
    file is checked against the SHA256SUMS beside it where one is recorded; every failure names the file."""
    found = stored_formats(folder)
    if storage is None:
        if not found:
            raise FileNotFoundError(f"no weights in {folder}: expected one of {', '.join(FILES.values())}")
        storage = found[0]
    elif check_storage(storage) not in found:
        raise FileNotFoundError(f"{folder} has no {storage} weights ({FILES[storage]}); it holds: {', '.join(found) or 'none'}")
    path = Path(folder) / FILES[storage]
    verify(path)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError) for damaged files
        raise ValueError(f"{path}: cannot be read as safetensors ({err}): the file is truncated or damaged") from None
    try:
        model.load_state_dict(dequantize_state(tensors))
    except (RuntimeError, KeyError) as err:
        reason = str(err).strip().splitlines()[0][:200]
        raise ValueError(f"{path}: its tensors do not fit the model its config.json describes ({reason})") from None
    return model
