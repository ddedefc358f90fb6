"""Weight storage formats of a generator folder, told apart by file name, beside its config.json.

    fp32  model.safetensors         save_pretrained's float32 weights
    fp16  model.fp16.safetensors    every float tensor in float16 (half the size)
    int8  model.int8.safetensors    weight-only int8, one fp16 scale per output row (a quarter)
    int4  model.int4.safetensors    weight-only int4, one fp16 scale per row and group of inputs (an eighth, plus
                                    the scales), two values packed per byte

In int8 and int4 every float tensor of two or more dimensions and at least MIN_NUMEL values is quantized: the
linear, embedding and conv weights, and also the larger SSM and position tables (e.g. a Bi-Mamba layer's A_log,
272x16 at `small`); 1-D tensors (norms, biases, D, dt_bias) and small tables stay float32. Loading dequantizes to
float32.

A weights file over MAX_FILE_BYTES is written as shards that each stay under it, named as the Hugging Face
libraries name theirs: model.int8-00001-of-00002.safetensors, ... (a tensor and its companions share a shard);
reading merges them, and a folder holds either the single file or one complete set of shards of a format.

An int4 file records its group size in its metadata (GROUP_KEY; files without it are LEGACY_GROUP). Each group's
scale is the fraction of its absmax (among CLIPS) whose rounding leaves the least squared error, and the matrices
of the modules named in KEEP_INT8 are stored int8 inside the int4 file (their companions tell them apart).

    python -m maskmamba.models.quantize convert FOLDER --to int4 [--from int8] [--group 32]
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from maskmamba.checksums import verify, write_sums

FILES = {  # storage format -> weights file, in the order a folder holding several is read (most exact first)
    "fp32": "model.safetensors",
    "fp16": "model.fp16.safetensors",
    "int8": "model.int8.safetensors",
    "int4": "model.int4.safetensors",
}
MAX_FILE_BYTES = 8_000_000  # larger weights are written as shards below this (the repository's per-file limit)
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.safetensors$")  # model.int8-00001-of-00002.safetensors
MIN_NUMEL = 4096  # smaller tensors gain nothing from quantization
GROUP = 32  # int4: inputs that share one scale, in the files written here
LEGACY_GROUP = 64  # int4: the group of files written before the group was recorded
GROUP_KEY = "int4_group"  # int4: the metadata entry that records the group
CLIPS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)  # int4: fractions of a group's absmax tried as its range
KEEP_INT8 = ("tok_emb", "head", "qkv", "proj")  # int4: modules whose matrices stay int8 (token embedding, output
# layer, attention; the most sensitive per value in bench/storage_loss.py)
INT8_SCALE = ".int8_scale"  # int8: the matrix keeps its shape; its companion holds the row scales
INT4_SCALE, INT4_SHAPE = ".int4_scale", ".int4_shape"  # int4: packed rows, their group scales, the original shape


@dataclass(frozen=True)
class Int4:
    """How an int4 file is written: group size, clip ratios searched per group, modules kept int8."""

    group: int = GROUP
    clips: tuple[float, ...] = CLIPS
    keep_int8: tuple[str, ...] = KEEP_INT8

    def __post_init__(self):
        if self.group < 2 or self.group % 2:
            raise ValueError(f"int4 group must be an even number of at least 2, got {self.group}")
        if not self.clips or not all(0 < c <= 1 for c in self.clips):
            raise ValueError(f"int4 clip ratios must lie in (0, 1], got {self.clips}")

    def keeps_int8(self, name: str) -> bool:
        """Whether parameter `name` belongs to a module named in keep_int8 (a whole component of its path)."""
        return any(part in self.keep_int8 for part in name.split(".")[:-1])


def _quantizable(tensor: torch.Tensor) -> bool:
    return tensor.ndim >= 2 and tensor.numel() >= MIN_NUMEL and tensor.is_floating_point()


def _fp16_scale(scale: torch.Tensor) -> torch.Tensor:
    """float32 scales -> fp16, never zero (an all-zero row or group must not divide by zero)."""
    return scale.half().clamp(min=torch.finfo(torch.float16).tiny)


def _int8(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = _fp16_scale(rows.abs().amax(dim=1) / 127)
    return (rows / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def _int4_codes(groups: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (groups / scale.float()[..., None]).round().clamp(-8, 7)


def _int4(rows: torch.Tensor, plan: Int4) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C) -> packed uint8 (R, ceil(C / group) * group / 2) and fp16 scales (R, groups); zero-padded columns.
    Each group's scale is the clip ratio of its absmax / 7 with the least squared rounding error."""
    groups = nn.functional.pad(rows, (0, -rows.shape[1] % plan.group)).view(rows.shape[0], -1, plan.group)
    absmax = groups.abs().amax(dim=2)
    scale, error = None, None
    for clip in plan.clips:
        trial = _fp16_scale(absmax * clip / 7)
        trial_error = (_int4_codes(groups, trial) * trial.float()[..., None] - groups).square().sum(dim=2)
        better = trial_error < error if error is not None else torch.ones_like(trial_error, dtype=torch.bool)
        scale = torch.where(better, trial, scale) if scale is not None else trial
        error = torch.where(better, trial_error, error) if error is not None else trial_error
    q = (_int4_codes(groups, scale).to(torch.int16) + 8).view(rows.shape[0], -1)  # 0..15
    return (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8), scale


def _dequant_int4(name: str, packed: torch.Tensor, scale: torch.Tensor, shape: torch.Size, group: int) -> torch.Tensor:
    rows = packed.shape[0]
    if packed.shape[1] * 2 != scale.shape[1] * group or scale.shape[0] != rows:
        raise ValueError(f"{name}: packed shape {tuple(packed.shape)} and scales {tuple(scale.shape)} do not fit "
                         f"int4 groups of {group}")
    q = torch.stack([packed & 15, packed >> 4], dim=-1).view(rows, -1).float() - 8
    full = (q.view(rows, -1, group) * scale.float()[..., None]).view(rows, -1)
    return full[:, : shape.numel() // rows].reshape(shape)


def quantize_state(state: dict[str, torch.Tensor], storage: str, plan: Int4 = Int4()) -> dict[str, torch.Tensor]:
    """A state dict -> the tensors of `storage`'s weights file (`plan` says how int4 is written)."""
    check_storage(storage)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().float().cpu().contiguous()
        if storage == "fp16":
            out[name] = tensor.half()
        elif _quantizable(tensor) and (storage == "int8" or (storage == "int4" and plan.keeps_int8(name))):
            rows, out[name + INT8_SCALE] = _int8(tensor.reshape(tensor.shape[0], -1))
            out[name] = rows.reshape(tensor.shape)
        elif storage == "int4" and _quantizable(tensor):
            out[name], out[name + INT4_SCALE] = _int4(tensor.reshape(tensor.shape[0], -1), plan)
            out[name + INT4_SHAPE] = torch.tensor(tensor.shape, dtype=torch.int64)
        else:
            out[name] = tensor
    return out


def metadata(storage: str, plan: Int4 = Int4()) -> dict[str, str]:
    """The safetensors metadata of a `storage` weights file written with `plan`."""
    return {"format": storage, GROUP_KEY: str(plan.group)} if storage == "int4" else {"format": storage}


def dequantize_state(tensors: dict[str, torch.Tensor], group: int = LEGACY_GROUP) -> dict[str, torch.Tensor]:
    """Inverse of quantize_state, to float32 (the format of each tensor is told by its companions); `group` is
    the int4 group the file records."""
    state = {}
    for name, tensor in tensors.items():
        if name.endswith((INT8_SCALE, INT4_SCALE, INT4_SHAPE)):
            continue
        if name + INT8_SCALE in tensors:
            rows = tensor.reshape(tensor.shape[0], -1).float() * tensors[name + INT8_SCALE].float()[:, None]
            tensor = rows.reshape(tensor.shape)
        elif name + INT4_SCALE in tensors:
            shape = torch.Size(tensors[name + INT4_SHAPE].tolist())
            tensor = _dequant_int4(name, tensor, tensors[name + INT4_SCALE], shape, group)
        state[name] = tensor.float()
    return state


def check_storage(storage: str) -> str:
    if storage not in FILES:
        raise ValueError(f"unknown storage format {storage!r}; choose one of: {', '.join(FILES)}")
    return storage


def shard_name(storage: str, index: int, count: int) -> str:
    """The file name of shard `index` (from 1) of `count` of `storage`'s weights."""
    return FILES[storage].replace(".safetensors", f"-{index:05d}-of-{count:05d}.safetensors")


def _nbytes(name: str, tensor: torch.Tensor) -> int:
    """Bytes `tensor` adds to a safetensors file: its data and a generous bound on its header entry."""
    return tensor.numel() * tensor.element_size() + len(name) + 128


def split_shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors -> consecutive groups whose files stay under `max_bytes` each; a tensor and its companions
    (scales, shape) stay in one group. One group when everything fits."""
    budget = max_bytes - 1024  # the header's braces and metadata
    units: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        base = next((name[: -len(s)] for s in (INT8_SCALE, INT4_SCALE, INT4_SHAPE) if name.endswith(s)), name)
        units.setdefault(base, {})[name] = tensor
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for unit in units.values():
        size = sum(_nbytes(n, t) for n, t in unit.items())
        if size > budget:
            raise ValueError(f"{next(iter(unit))}: {size} bytes cannot fit a shard of {max_bytes} bytes")
        if used + size > budget and shards[-1]:
            shards.append({})
            used = 0
        shards[-1].update(unit)
        used += size
    return shards


def stored_files(folder: str | Path, storage: str) -> list[Path]:
    """Every file of `storage`'s weights in `folder`: the single file and any shards (empty when none)."""
    folder = Path(folder)
    single = folder / FILES[storage]
    shards = sorted(folder.glob(FILES[storage].replace(".safetensors", "-*-of-*.safetensors")))
    return ([single] if single.is_file() else []) + [p for p in shards if SHARD.search(p.name)]


def write_state(state: dict[str, torch.Tensor], folder: str | Path, storage: str, plan: Int4 = Int4(),
                max_bytes: int | None = None) -> list[Path]:
    """Write a float state dict as `storage`'s weights in `folder`: one file, or shards when it would exceed
    `max_bytes` (default MAX_FILE_BYTES; no sums). Files of `storage` already there are replaced; returns the
    paths written."""
    folder = Path(folder)
    shards = split_shards(quantize_state(state, storage, plan), max_bytes or MAX_FILE_BYTES)
    for old in stored_files(folder, storage):
        old.unlink()
    count = len(shards)
    names = [FILES[storage]] if count == 1 else [shard_name(storage, k, count) for k in range(1, count + 1)]
    for name, tensors in zip(names, shards):
        save_file(tensors, str(folder / name), metadata=metadata(storage, plan))
    return [folder / name for name in names]


def save_weights(model: nn.Module, folder: str | Path, storage: str = "fp32", plan: Int4 = Int4()) -> list[Path]:
    """config.json (save_pretrained's) beside the weights of `storage` (sharded past MAX_FILE_BYTES, fp32 as
    save_pretrained writes it), and SHA256SUMS of every weights file there; returns the weights files' paths.
    Weights of other formats already in `folder` stay, so one folder can hold a model in several formats."""
    folder = Path(folder)
    if check_storage(storage) == "fp32":
        model.save_pretrained(folder)  # writes the sums too (Generator.save_pretrained)
        return [folder / FILES[storage]]
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(scratch) / "config.json", folder / "config.json")
    paths = write_state(model.state_dict(), folder, storage, plan)
    write_sums(folder)
    return paths


def stored_formats(folder: str | Path) -> list[str]:
    """The storage formats whose weights (one file or shards) are in `folder`, most exact first."""
    return [storage for storage in FILES if stored_files(folder, storage)]


def weights_files(folder: str | Path, storage: str | None) -> list[Path]:
    """The weights files of `storage` in `folder` (default: the most exact format present): the single file, or
    every shard of one complete set; an error names what is missing or mixed."""
    found = stored_formats(folder)
    if storage is None:
        if not found:
            raise FileNotFoundError(f"no weights in {folder}: expected one of {', '.join(FILES.values())}")
        storage = found[0]
    elif check_storage(storage) not in found:
        raise FileNotFoundError(f"{folder} has no {storage} weights ({FILES[storage]}); it holds: {', '.join(found) or 'none'}")
    files = stored_files(folder, storage)
    counts = {int(SHARD.search(p.name).group(2)) for p in files if SHARD.search(p.name)}
    if len(files) > 1 and (len(counts) != 1 or (Path(folder) / FILES[storage]).is_file()):
        raise ValueError(f"{folder} mixes {storage} weights files ({', '.join(p.name for p in files)}): keep one set")
    if counts:
        count = counts.pop()
        missing = [shard_name(storage, k, count) for k in range(1, count + 1)]
        missing = [name for name in missing if Path(folder) / name not in files]
        if missing:
            raise FileNotFoundError(f"{folder}: {storage} weights are incomplete: {', '.join(missing)} missing")
    return files


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    verify(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            return file.metadata() or {}, {name: file.get_tensor(name) for name in file.keys()}
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError) for damaged files
        raise ValueError(f"{path}: cannot be read as safetensors ({err}): the file is truncated or damaged") from None


def read_state(paths: str | Path | list[Path]) -> dict[str, torch.Tensor]:
    """A weights file or its shards (each checked against the SHA256SUMS beside it where one is recorded) ->
    float32 state dict; every failure names the file."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    meta, tensors = {}, {}
    for path in paths:
        meta, more = _read_file(path)
        tensors |= more
    try:
        group = int(meta.get(GROUP_KEY, LEGACY_GROUP))
        if group < 2 or group % 2:
            raise ValueError(f"not an even number of at least 2: {group}")
        return dequantize_state(tensors, group)
    except ValueError as err:
        raise ValueError(f"{paths[0]}: damaged int4 layout ({err})") from None


def load_weights(model: nn.Module, folder: str | Path, storage: str | None = None) -> nn.Module:
    """Load folder's weights of `storage` (default: the most exact one present) into `model` and return it. The
    file is checked against the SHA256SUMS beside it where one is recorded; every failure names the file."""
    paths = weights_files(folder, storage)
    state = read_state(paths)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        reason = str(err).strip().splitlines()[0][:200]
        where = paths[0] if len(paths) == 1 else Path(folder)
        raise ValueError(f"{where}: its tensors do not fit the model its config.json describes ({reason})") from None
    return model


def convert(folder: str | Path, to: str, source: str | None = None, plan: Int4 = Int4()) -> list[Path]:
    """Write `folder`'s weights as `to` from its `source` weights (default: the most exact present) and rewrite
    its SHA256SUMS; returns the new files' paths. Only a coarser format can be made (precision is not regained)."""
    origin = weights_files(folder, source)  # names what is missing before anything is written
    source = source or stored_formats(folder)[0]
    order = list(FILES)
    if order.index(check_storage(to)) <= order.index(source):
        coarser = ", ".join(order[order.index(source) + 1:]) or "none"
        raise ValueError(f"cannot make {to} from {source} in {folder}: only a coarser format ({coarser}) can be made")
    paths = write_state(read_state(origin), folder, to, plan)
    write_sums(folder)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maskmamba.models.quantize", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="write another storage file into a checkpoint folder from a more exact one")
    c.add_argument("folder", type=Path)
    c.add_argument("--to", required=True, choices=list(FILES))
    c.add_argument("--from", dest="source", choices=list(FILES), help="default: the most exact file present")
    c.add_argument("--group", type=int, default=GROUP, help=f"int4: inputs per scale (default {GROUP})")
    args = p.parse_args(argv)
    try:
        paths = convert(args.folder, args.to, args.source, Int4(group=args.group))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{path}: {path.stat().st_size} bytes")
    print("SHA256SUMS rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
