"""SHA-256 sums of a checkpoint folder's weights, kept beside them in SHA256SUMS (the `sha256sum` format, so
`sha256sum -c SHA256SUMS` checks them too), written on export and checked when the weights load.

    python -m maskmamba.checksums write FOLDER...   # (re)record the sums of every *.safetensors in each folder
    python -m maskmamba.checksums check FOLDER...   # exit 1 naming each file whose sum differs
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

SUMS_FILE = "SHA256SUMS"
CHUNK = 1024**2


class ChecksumError(ValueError):
    """A weights file whose SHA-256 differs from the one recorded beside it."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sums(folder: str | Path) -> dict[str, str] | None:
    """{file name: hex digest} from folder's SHA256SUMS; None when there is none. A malformed line is an error
    that names the file and the line."""
    path = Path(folder) / SUMS_FILE
    if not path.is_file():
        return None
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            raise ChecksumError(f"{path}, line {number}: expected '<64 hex digits>  <file name>', got {line[:80]!r}")
        sums[name] = digest
    return sums


def write_sums(folder: str | Path) -> Path:
    """Record the sums of every *.safetensors file in `folder` in its SHA256SUMS; returns that file's path."""
    folder = Path(folder)
    weights = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if not weights:
        raise FileNotFoundError(f"no *.safetensors files in {folder}")
    path = folder / SUMS_FILE
    path.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in weights))
    return path


def verify(path: str | Path) -> bool:
    """Check a weights file against the SHA256SUMS beside it: True when it matches, False when no sum is recorded
    for it; ChecksumError naming the file when it differs."""
    path = Path(path)
    sums = read_sums(path.parent)
    if sums is None or path.name not in sums:
        return False
    actual = sha256(path)
    if actual != sums[path.name]:
        raise ChecksumError(f"{path}: its SHA-256 is {actual[:16]}…, but {SUMS_FILE} records "
                            f"{sums[path.name][:16]}…: the file is damaged or was replaced")
    return True


class RecordsChecksums:
    """Put before PyTorchModelHubMixin among a model's bases: save_pretrained then also writes SHA256SUMS."""

    def save_pretrained(self, save_directory: str | Path, **kwargs):
        result = super().save_pretrained(save_directory, **kwargs)
        write_sums(save_directory)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for folder in args.folders:
        if args.action == "write":
            print(f"wrote {write_sums(folder)}")
            continue
        sums = read_sums(folder)
        if sums is None:
            print(f"{folder}: no {SUMS_FILE} (write it with: python -m maskmamba.checksums write {folder})",
                  file=sys.stderr)
            failed += 1
        for name in sums or {}:
            try:
                verify(folder / name)
                print(f"{folder / name}: OK")
            except (ChecksumError, OSError) as err:
                print(err, file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
