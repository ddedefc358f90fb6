"""Emoji data set: build it with `python -m maskmamba.data build OUT`, read it with these classes."""
from maskmamba.data.dataset import CaptionBank, EmojiImages, load_manifest

__all__ = ["CaptionBank", "EmojiImages", "load_manifest"]
