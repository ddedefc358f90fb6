"""The inputs of a generator lease, packed here into carry-sized folders and unpacked on the device machine.

    python3 scripts/lease_inputs.py pack DATA INCEPTION [--variants V,...] [--root .gpu] [--budget-mib 56]
    python3 scripts/lease_inputs.py unpack [--root .gpu]        # on the device, at the start of every call

`pack` writes ROOT/L1 (the caption and token caches xz-compressed, the manifest gzipped: what training needs),
ROOT/c (the image shards, for the judge and FID), ROOT/d (the Inception file) and ROOT/i/VARIANT (copies of
assets/VARIANT, the weights a run starts from with INIT=ROOT/i), then prints the calls that carry them, each under
--budget-mib (a call carries at most 64 MiB with the tracked tree: leave room for it). `unpack` turns whatever of
L1, c and d has landed into ROOT/data (DATA for scripts/gpu_generators.sh) and ROOT/inception.pt; it skips what is
already unpacked, so every call can begin with it. Standard library only: the device has no registries.
"""
from __future__ import annotations

import argparse
import gzip
import lzma
import shutil
import sys
from pathlib import Path

CACHES = ("captions.safetensors", "tokens.safetensors")  # xz-compressed into L1 with the gzipped manifest
MANIFEST = "manifest.json"
INCEPTION = "inception.pt"
MIB = 1 << 20


def _compress(src: Path, dst: Path, opener) -> None:
    with open(src, "rb") as s, opener(dst, "wb") as d:
        shutil.copyfileobj(s, d, 16 * MIB)


def _decompress(src: Path, dst: Path, opener) -> None:
    """Through a temporary name, so that an interrupted call leaves no partial file."""
    part = dst.with_name(dst.name + ".part")
    with opener(src, "rb") as s, open(part, "wb") as d:
        shutil.copyfileobj(s, d, 16 * MIB)
    part.replace(dst)


def pack(data: Path, inception: Path, variants: list[str], root: Path, assets: Path) -> dict[str, int]:
    """Write the carry folders under root; returns each folder's size in bytes, in carrying order."""
    missing = [p for p in [*(data / n for n in (*CACHES, MANIFEST)), inception, *(assets / v for v in variants)]
               if not p.exists()]
    if missing:
        raise SystemExit(f"missing: {', '.join(map(str, missing))} (a built, tokenized data set and the fid-fp16 file)")
    l1, shards, weights = root / "L1", root / "c", root / "d"
    for folder in (l1, shards, weights):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for name in CACHES:
        _compress(data / name, l1 / f"{name}.xz", lzma.open)
    _compress(data / MANIFEST, l1 / f"{MANIFEST}.gz", gzip.open)
    for shard in sorted(data.glob("*-[0-9][0-9][0-9].safetensors")):
        shutil.copy2(shard, shards / shard.name)
    shutil.copy2(inception, weights / INCEPTION)
    folders = [l1]  # training starts once the caches and its starting weights have landed; evaluation needs the rest
    for variant in variants:
        target = root / "i" / variant
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(assets / variant, target)
        folders.append(target)
    folders += [shards, weights]
    return {str(f): sum(p.stat().st_size for p in f.rglob("*") if p.is_file()) for f in folders}


def plan_calls(sizes: dict[str, int], budget: int) -> list[list[str]]:
    """Greedy, in order: each call takes the next folders while they fit the budget (one folder alone may not)."""
    calls: list[list[str]] = []
    used = budget
    for folder, size in sizes.items():
        if used + size > budget:
            calls.append([])
            used = 0
        calls[-1].append(folder)
        used += size
    return calls


def unpack(root: Path) -> list[str]:
    """Unpack what has landed into root/data and root/inception.pt; returns what this call unpacked."""
    data, done = root / "data", []
    data.mkdir(parents=True, exist_ok=True)
    for name in CACHES:
        src, dst = root / "L1" / f"{name}.xz", data / name
        if src.exists() and not dst.exists():
            _decompress(src, dst, lzma.open)
            done.append(name)
    src, dst = root / "L1" / f"{MANIFEST}.gz", data / MANIFEST
    if src.exists() and not dst.exists():
        _decompress(src, dst, gzip.open)
        done.append(MANIFEST)
    for shard in sorted((root / "c").glob("*.safetensors")):
        shutil.move(shard, data / shard.name)
        done.append(shard.name)
    if (root / "d" / INCEPTION).exists():
        shutil.move(root / "d" / INCEPTION, root / INCEPTION)
        done.append(INCEPTION)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="here: write the carry folders and print the calls")
    pk.add_argument("data", type=Path)
    pk.add_argument("inception", type=Path)
    pk.add_argument("--variants", default="", help="comma-separated assets/ folders to start runs from")
    pk.add_argument("--assets", type=Path, default=Path("assets"))
    pk.add_argument("--root", type=Path, default=Path(".gpu"))
    pk.add_argument("--budget-mib", type=float, default=56.0, help="carried MiB per call, besides the tree")
    up = sub.add_parser("unpack", help="on the device: unpack what has landed")
    up.add_argument("--root", type=Path, default=Path(".gpu"))
    args = p.parse_args(argv)
    if args.command == "unpack":
        done = unpack(args.root)
        print(f"unpacked: {', '.join(done) or 'nothing new'}; {args.root / 'data'} holds "
              f"{len(list((args.root / 'data').iterdir()))} files")
        return 0
    variants = [v for v in args.variants.split(",") if v]
    sizes = pack(args.data, args.inception, variants, args.root, args.assets)
    for i, call in enumerate(plan_calls(sizes, int(args.budget_mib * MIB)), 1):
        print(f"call {i}: carry {call} ({sum(sizes[f] for f in call) / MIB:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
