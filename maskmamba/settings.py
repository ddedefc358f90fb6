"""Sampling settings: the one home of the defaults (CFG, iterations, temperatures, seed) and of their check."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

MAX_STEPS = 256  # one token per step at most on the 16x16 grid
MAX_SEED = 2**32 - 1
CFG_SCHEDULES = ("constant", "linear")
GPU_STEPS = 20  # a GPU runs 20 iterations in tens of ms, and they draw better images than 12 (serial-half, CFG 2, 2,000
# images: FID 47.4 at 12, 41.0 at 20, 40.4 at 25); the CPU keeps `steps` to stay near 3 s a run


@dataclass(frozen=True)
class SamplingSettings:
    """How MaskGIT decoding runs: guidance scale and its schedule, number of steps, sampling temperature, the Gumbel
    scale of the choice of what stays decoded (annealed linearly to 0 over the steps; MaskGIT's 4.5) and seed.

    `cfg_schedule` "constant" guides every step at `cfg_scale`; "linear" (Muse's and MAR's) guides a step at
    1 + (cfg_scale - 1) x the share of the image decoded before it: unguided at the first step, near `cfg_scale`
    by the last.

    A checkpoint may override the default CFG scale with `default_cfg` in its config.json (the best scale of
    its sweep), and a GPU starts from GPU_STEPS iterations: see `for_checkpoint`.
    """

    cfg_scale: float = 3.0
    steps: int = 12
    temperature: float = 0.9
    seed: int = 0
    choice_temperature: float = 4.5
    cfg_schedule: str = "constant"

    def check(self) -> None:
        """Raise ValueError with a readable message for anything the sampler cannot run."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        if not _real(self.cfg_scale) or not math.isfinite(self.cfg_scale) or self.cfg_scale < 0:
            raise ValueError(f"CFG scale must be a finite number >= 0, got {self.cfg_scale!r}")
        if not _real(self.temperature) or not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if not _real(self.choice_temperature) or not math.isfinite(self.choice_temperature) or self.choice_temperature < 0:
            raise ValueError(f"choice temperature must be a finite number >= 0, got {self.choice_temperature!r}")
        if self.cfg_schedule not in CFG_SCHEDULES:
            raise ValueError(f"CFG schedule must be one of {', '.join(CFG_SCHEDULES)}, got {self.cfg_schedule!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")

    def sampling(self) -> SamplingSettings:
        """Just the sampling part (drops what a subclass adds, such as the condition)."""
        return SamplingSettings(**{f.name: getattr(self, f.name) for f in fields(SamplingSettings)})

    @classmethod
    def for_checkpoint(cls, config: dict, device_type: str = "cpu") -> SamplingSettings:
        """The defaults for a checkpoint whose config.json is `config`, served on `device_type`: its `default_cfg`
        when it has one, and GPU_STEPS iterations on a GPU."""
        chosen = {"cfg_scale": float(config["default_cfg"])} if "default_cfg" in config else {}
        settings = cls(**chosen, **({"steps": GPU_STEPS} if device_type == "cuda" else {}))
        settings.check()
        return settings


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
