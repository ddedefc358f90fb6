"""The generator-training bundle that travels to a GPU machine: token cache, a trimmed caption cache, classes.

Pixels stay behind, each emoji keeps only its first `captions_per_emoji` captions (in the priority order of
maskmamba.data.captions: the annotation, tag captions, then the variety), and the token cache keeps at most
`copies` augmented copies per image, so the bundle plus the mamba-ssm wheel fit one 64 MiB carry. Sizes, roughly:
512 bytes of tokens per image and copy, 2-4 KB per caption.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

AUG_KEY = "train_aug_ids"

from maskmamba.data.dataset import CAPTIONS, load_manifest
from maskmamba.data.tokens import TOKENS


def trim_captions(arrays: dict[str, np.ndarray], per_emoji: int) -> dict[str, np.ndarray]:
    """Keep the first `per_emoji` captions of every emoji in a captions.safetensors array dict."""
    emoji, offsets = arrays["caption_emoji"], arrays["offsets"]
    rank = np.arange(len(emoji)) - np.searchsorted(emoji, emoji)  # position of each caption within its emoji
    keep = np.nonzero(rank < per_emoji)[0]
    rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in keep])
    lengths = offsets[keep + 1] - offsets[keep]
    return {
        "tokens": arrays["tokens"][rows],
        "scales": arrays["scales"][rows],
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "caption_emoji": emoji[keep],
    }


def pack(root: str | Path, out: str | Path, captions_per_emoji: int = 4, copies: int | None = None) -> Path:
    """Write OUT/tokens.safetensors (at most `copies` augmented copies per image; None keeps all),
    OUT/captions.safetensors (trimmed) and OUT/manifest.json (classes only)."""
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with safe_open(str(root / TOKENS), framework="numpy") as handle:
        has_copies, token_metadata = AUG_KEY in handle.keys(), handle.metadata()
    if copies is None or not has_copies:
        shutil.copyfile(root / TOKENS, out / TOKENS)
    else:
        tokens = load_file(str(root / TOKENS))
        tokens[AUG_KEY] = np.ascontiguousarray(tokens[AUG_KEY][:, :copies])
        if not copies:
            del tokens[AUG_KEY]
        save_file(tokens, str(out / TOKENS), metadata=token_metadata)
    with safe_open(str(root / CAPTIONS), framework="numpy") as handle:
        metadata = handle.metadata()
    trimmed = trim_captions(load_file(str(root / CAPTIONS)), captions_per_emoji)
    save_file(trimmed, str(out / CAPTIONS), metadata=metadata)
    (out / "manifest.json").write_text(json.dumps({"classes": load_manifest(root)["classes"]}))
    return out
