"""The GPU-training bundle keeps each emoji's first captions, with their token rows intact."""
from __future__ import annotations

import numpy as np

from maskmamba.data.pack import trim_captions


def test_trim_keeps_first_captions_of_each_emoji_with_their_rows():
    lengths = np.array([2, 3, 1, 4, 2, 3])
    emoji = np.array([0, 0, 0, 1, 2, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(offsets[-1])[:, None].repeat(3, axis=1).astype(np.int8)
    arrays = {"tokens": tokens, "scales": np.arange(offsets[-1], dtype=np.float16), "offsets": offsets,
              "caption_emoji": emoji}
    out = trim_captions(arrays, per_emoji=2)
    kept = [0, 1, 3, 4, 5]  # emoji 0 loses its third caption
    assert out["caption_emoji"].tolist() == emoji[kept].tolist()
    assert np.diff(out["offsets"]).tolist() == lengths[kept].tolist()
    expected_rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in kept])
    assert out["tokens"][:, 0].tolist() == expected_rows.tolist()
    assert out["scales"].tolist() == expected_rows.astype(np.float16).tolist()
