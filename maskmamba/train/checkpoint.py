"""Resumable training checkpoints: atomic save, load, and the RNG state that goes with them."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` with torch.save to a temporary file, then rename it over `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict | None:
    """The saved state, or None when there is no checkpoint at `path` yet."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    """The CPU and (where present) CUDA generator states."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured; CUDA states are restored only when CUDA is present."""
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class Deadline:
    """A wall-clock budget of `minutes`, with a periodic trigger for intermediate saves."""

    def __init__(self, minutes: float, save_every_minutes: float):
        self.start = time.monotonic()
        self.end = self.start + minutes * 60
        self.every = save_every_minutes * 60
        self.last_save = self.start

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def save_due(self) -> bool:
        """True once every `save_every_minutes`; resets the timer when it fires."""
        now = time.monotonic()
        if now - self.last_save < self.every:
            return False
        self.last_save = now
        return True

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def share(self) -> float:
        """The part of the budget spent, 0 to 1."""
        return min(1.0, self.elapsed() / max(self.end - self.start, 1e-9))
