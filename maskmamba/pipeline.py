"""Pipeline: tokenizer + prompt encoder + generator + sampler, from class/prompt to PIL images."""
from __future__ import annotations

import dataclasses
import difflib
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from maskmamba.models import Condition, Generator, check_tokenizer, load_generator, read_config
from maskmamba.models.tokenizer import VQTokenizer, decode_pixels, preview_pixels
from maskmamba.sampler import LogitsFn, SampleStep, StepFn, guidance, maskgit
from maskmamba.settings import SamplingSettings
from maskmamba.text_encoder import PromptEncoder

ASSETS = Path(__file__).resolve().parent.parent / "assets"
IMAGE_SIZE = 128
MAX_PROMPT_CHARS = 300


def check_prompt_length(prompt: str) -> None:
    """Refuse a prompt of more than MAX_PROMPT_CHARS characters, leading and trailing spaces aside."""
    if len(prompt.strip()) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")


PreviewFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (1, N) ids, (1, N) still masked -> (H, W, 3) uint8


@dataclass
class StepResult:
    """One decoding step as a person sees it."""

    step: int
    total: int
    image: Image.Image  # preview: this step's prediction, still-masked cells dimmed
    mask: np.ndarray  # (grid, grid) bool, True where still masked
    latency_ms: float  # the model step (forward + sampling; GPU time on a GPU), not the preview decode
    tokens: torch.Tensor  # (grid*grid,) decoded ids, mask id where still masked


class PendingStep:
    """A step whose preview is being made: on a GPU it is decoded and copied to the host on a side stream, beside
    the next step on the main one; `result()` waits for it and builds the StepResult."""

    def __init__(self, step: SampleStep, preview_fn: PreviewFn, grid: int, side: torch.cuda.Stream | None = None):
        self.step, self.copied = step, None
        mask = step.mask[0].view(grid, grid)
        if side is None:
            self.preview, self.mask = preview_fn(step.prediction[:1], step.mask[:1]), mask
            return
        side.wait_stream(torch.cuda.current_stream(side.device))
        with torch.cuda.stream(side):
            preview = preview_fn(step.prediction[:1], step.mask[:1])
            self.preview, self.mask = (t.to("cpu", non_blocking=True) for t in (preview, mask))  # pinned by the copy
            self.copied = torch.cuda.Event()
            self.copied.record()

    def result(self) -> StepResult:
        if self.copied is not None:
            self.copied.synchronize()
        s = self.step
        image = Image.fromarray(self.preview.numpy())
        return StepResult(s.index, s.total, image, self.mask.numpy(), s.latency_ms, s.tokens[0])


class Pipeline:
    """Class- or prompt-conditioned generation and inpainting with one generator and the VQ tokenizer.

    `defaults` are the sampling settings a call starts from (a checkpoint's config.json may set `default_cfg`);
    `prompt_encoder` may be shared between pipelines (it loads MiniLM on first use).
    """

    def __init__(
        self, generator: Generator, tokenizer: VQTokenizer, class_names: list[str], device: str | torch.device = "cpu",
        prompt_encoder: PromptEncoder | None = None, defaults: SamplingSettings = SamplingSettings(),
    ):
        self.device = torch.device(device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        check_tokenizer(generator, tokenizer)
        self.generator = generator.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer.to(self.device).eval()
        self.class_names = list(class_names)
        self._class_index = {name.lower(): i for i, name in enumerate(self.class_names)}
        self.prompt_encoder = prompt_encoder or PromptEncoder(self.device)
        defaults.check()
        self.defaults = defaults
        self._logits_fn: LogitsFn = guidance(self.generator)
        self._step_fn: StepFn | None = None  # eager steps through _logits_fn until enable_cuda_graphs
        self._side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None  # for previews
        self._preview_fn: PreviewFn = self._eager_preview

    @classmethod
    def from_pretrained(
        cls, variant: str | None = None, path: str | Path | None = None, device: str | torch.device = "cpu",
        assets: str | Path = ASSETS, tokenizer: VQTokenizer | None = None, prompt_encoder: PromptEncoder | None = None,
        storage: str | None = None,
    ) -> Pipeline:
        """Load `<assets>/<variant>/` (or `path`), with the tokenizer (unless one is given, to share it) and the
        class list found beside it or in `assets`; the default CFG scale is the checkpoint's `default_cfg`. The
        weights may be stored as fp32, fp16, int8 or int4 (told by file name); `storage` picks one where the
        folder holds several."""
        if path is None and variant is None:
            raise ValueError("give a variant name or a folder")
        assets = Path(assets)
        folder = Path(path) if path is not None else assets / variant
        if not folder.is_dir():
            raise FileNotFoundError(f"no checkpoint folder {folder}")
        generator = load_generator(folder, storage)
        if variant is not None and generator.variant != variant:
            raise ValueError(f"{folder} holds {generator.variant!r}, not {variant!r}")
        tokenizer = tokenizer or VQTokenizer.from_pretrained(_first_existing(folder / "tokenizer", assets / "tokenizer"))
        classes = json.loads(_first_existing(folder / "classes.json", assets / "classes.json").read_text())
        defaults = SamplingSettings.for_checkpoint(read_config(folder), torch.device(device).type)
        return cls(generator, tokenizer, classes, device, prompt_encoder, defaults)

    def enable_cuda_graphs(self, preview: Callable | None = None) -> None:
        """Replay each whole step (batch 1) and its preview from CUDA graphs captured now.

        `preview` is a `maskmamba.graphs.GraphedPreview` of this pipeline's tokenizer, to share one between
        pipelines (previews are then decoded on its stream); by default one is captured here. Needs the pipeline on
        a CUDA device.
        """
        if self.device.type != "cuda":
            raise ValueError("CUDA graphs need the pipeline on a CUDA device")
        from maskmamba.graphs import GraphedDecoding, GraphedPreview  # CUDA only

        if preview is not None and getattr(preview, "tokenizer", None) is not self.tokenizer:
            raise ValueError("the shared preview graph must be captured for this pipeline's tokenizer")
        self._step_fn = GraphedDecoding(self.generator)
        self._preview_fn = preview or GraphedPreview(self.tokenizer)
        self._side = self._preview_fn.stream  # one stream per preview graph: its sharers take turns

    @property
    def cuda_graphs(self) -> bool:
        """Whether steps replay CUDA graphs (see `enable_cuda_graphs`)."""
        return self._preview_fn != self._eager_preview

    def class_id(self, name: str) -> int:
        """Index of a class name (case-insensitive); a ValueError suggests near names."""
        key = name.strip().lower()
        if key not in self._class_index:
            near = difflib.get_close_matches(key, self._class_index, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"unknown class {name!r}{hint}")
        return self._class_index[key]

    def condition(self, class_name: str | None = None, class_id: int | None = None, prompt: str | None = None) -> Condition:
        """Exactly one of class_name, class_id, prompt -> a batch-of-one Condition on the pipeline's device."""
        given = [x is not None for x in (class_name, class_id, prompt)]
        if sum(given) != 1:
            raise ValueError("give exactly one of class_name, class_id or prompt")
        if prompt is not None:
            prompt = prompt.strip()
            if not prompt:
                raise ValueError("the prompt is empty")
            check_prompt_length(prompt)
            states, mask = self.prompt_encoder.encode([prompt])
            return Condition.prompts(states, mask).to(self.device)
        if class_name is not None:
            class_id = self.class_id(class_name)
        if not 0 <= int(class_id) < len(self.class_names):
            raise ValueError(f"class id must be in 0..{len(self.class_names) - 1}, got {class_id}")
        return Condition.classes(torch.tensor([int(class_id)], device=self.device))

    def settings(self, settings: SamplingSettings | None = None, **changes) -> SamplingSettings:
        """`settings` (default: this pipeline's defaults) with any of its fields (cfg_scale, steps, temperature, seed,
        choice_temperature, cfg_schedule) changed."""
        names = {f.name for f in dataclasses.fields(SamplingSettings)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(names))}")
        chosen = dataclasses.replace((settings or self.defaults).sampling(), **changes)
        chosen.check()
        return chosen

    def stream(
        self,
        class_name: str | None = None,
        class_id: int | None = None,
        prompt: str | None = None,
        settings: SamplingSettings | None = None,
        tokens: torch.Tensor | None = None,
        **changes,
    ) -> Iterator[StepResult]:
        """Yield a StepResult after every decoding step; `tokens` (grid*grid,) with mask ids inpaints.

        Sampling follows `settings` (default: the pipeline's defaults) with keyword changes such as `cfg_scale=2.0`.
        On a GPU a step's preview is decoded on a side stream beside the next step, and its result is handed out
        once that step is queued, so the GPU never waits for the host to show a preview.
        """
        chosen = self.settings(settings, **changes)
        cond = self.condition(class_name, class_id, prompt)
        start = None if tokens is None else tokens.to(self.device)[None]
        g = self.generator
        lag = 0 if self._side is None else 1
        queued: deque[PendingStep] = deque()
        for s in maskgit(self._logits_fn, cond, g.grid, g.mask_id, chosen, tokens=start, step_fn=self._step_fn):
            queued.append(PendingStep(s, self._preview_fn, g.grid, self._side))
            if len(queued) > lag:
                yield queued.popleft().result()
        while queued:
            yield queued.popleft().result()

    def generate(self, **kwargs) -> Image.Image:
        """The final image of `stream(**kwargs)`."""
        return _last(self.stream(**kwargs)).image

    def inpaint_stream(self, image: Image.Image, mask: np.ndarray | Image.Image, **kwargs) -> Iterator[StepResult]:
        """Regenerate the tokens under `mask` (True/white = repaint); pixels outside it stay as they were."""
        original, pixel_mask = _prepare_inpaint(image, mask)
        tokens = self.encode(original)[0]
        token_mask = self.token_mask(pixel_mask)
        if not token_mask.any():
            raise ValueError("the mask is empty: paint the region to regenerate")
        tokens = torch.where(torch.from_numpy(token_mask.reshape(-1)).to(tokens.device), self.generator.mask_id, tokens)
        keep = np.asarray(original)
        for result in self.stream(tokens=tokens, **kwargs):
            result.image = Image.fromarray(np.where(pixel_mask[..., None], np.asarray(result.image), keep))
            yield result

    def inpaint(self, image: Image.Image, mask: np.ndarray | Image.Image, **kwargs) -> Image.Image:
        """The final image of `inpaint_stream`."""
        return _last(self.inpaint_stream(image, mask, **kwargs)).image

    def token_mask(self, pixel_mask: np.ndarray) -> np.ndarray:
        """(128, 128) pixel mask -> (grid, grid) token mask: a token is repainted if any of its pixels is."""
        g = self.generator.grid
        cell = IMAGE_SIZE // g
        return pixel_mask.reshape(g, cell, g, cell).any(axis=(1, 3))

    @torch.no_grad()
    def encode(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> (1, grid*grid) token ids."""
        x = torch.from_numpy(np.asarray(model_image(image), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        return self.tokenizer.encode(x.to(self.device)).flatten(1)

    def decode(self, tokens: torch.Tensor) -> list[Image.Image]:
        """(B, grid*grid) ids -> B images."""
        return [Image.fromarray(p) for p in decode_pixels(self.tokenizer, tokens).cpu().numpy()]

    def _eager_preview(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return preview_pixels(self.tokenizer, tokens, mask)[0]


def _first_existing(*paths: Path) -> Path:
    for p in paths:
        if p.exists():
            return p
    raise FileNotFoundError(f"none of these exist: {', '.join(map(str, paths))}")


def _last(results: Iterator[StepResult]) -> StepResult:
    result = None
    for result in results:
        pass
    return result


def model_image(image: Image.Image) -> Image.Image:
    """Any PIL image -> the 128x128 RGB the tokenizer sees: transparent parts composited on white."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")
    if image.size == (IMAGE_SIZE, IMAGE_SIZE):
        return image
    factor = image.width // IMAGE_SIZE
    if image.width == image.height == factor * IMAGE_SIZE:  # a whole-number enlargement (the demo's editor): exact undo
        return image.reduce(factor)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)


def _prepare_inpaint(image: Image.Image, mask: np.ndarray | Image.Image) -> tuple[Image.Image, np.ndarray]:
    """Check that the mask matches the image, then bring both to 128x128; mask True = repaint."""
    if not isinstance(image, Image.Image):
        raise ValueError("the image must be a PIL image")
    mask_array = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    if mask_array.ndim == 3:
        mask_array = mask_array.max(axis=-1)
    if mask_array.shape != (image.height, image.width):
        raise ValueError(f"the mask is {mask_array.shape[1]}x{mask_array.shape[0]} but the image is {image.width}x{image.height}")
    return model_image(image), model_mask(mask_array)


def model_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) mask at any size, nonzero = repaint -> (128, 128) bool, nearest."""
    scaled = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).resize((IMAGE_SIZE, IMAGE_SIZE), Image.NEAREST)
    return np.asarray(scaled) > 0
