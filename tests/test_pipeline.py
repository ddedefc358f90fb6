"""Pipeline: loading from a folder, class and prompt generation, streaming, previews, inpainting, readable errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskmamba import Pipeline


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return Pipeline.from_pretrained(path=tiny_checkpoint)


def test_generate_by_class_name_and_id(pipe):
    by_name = pipe.generate(class_name="Class 3", steps=3, seed=5)
    by_id = pipe.generate(class_id=3, steps=3, seed=5)
    assert by_name.size == (128, 128) and by_name.mode == "RGB"
    assert np.array_equal(np.asarray(by_name), np.asarray(by_id))


def test_stream_yields_each_step_with_a_shrinking_mask(pipe):
    results = list(pipe.stream(class_id=1, steps=4, seed=0))
    assert [r.step for r in results] == [1, 2, 3, 4]
    assert results[0].mask.shape == (16, 16) and results[-1].mask.sum() == 0
    assert results[0].mask.sum() > results[1].mask.sum()
    assert all(r.latency_ms > 0 for r in results)


class _RampTokenizer:
    """Decodes any ids to a ramp through [-1, 1], so the preview blend sees every grey level."""

    grid = 16

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.linspace(-1, 1, 3 * 128 * 128).view(1, 3, 128, 128).expand(len(ids), -1, -1, -1)


def _numpy_preview(tokenizer, tokens: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The eager preview before `preview_pixels`: Pipeline.decode's conversion, then the numpy `_dim_masked` blend."""
    g = tokenizer.grid
    with torch.no_grad():
        x = tokenizer.decode(tokens.view(-1, g, g))
    image = Image.fromarray(((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()[0])
    big = np.kron(mask.view(g, g).numpy(), np.ones((128 // g, 128 // g), dtype=bool))[..., None]
    pixels = np.asarray(image).astype(np.float32)
    return np.where(big, 0.35 * pixels + 0.65 * 128, pixels).astype(np.uint8)


@pytest.mark.parametrize("tokenizer", ["pipeline", "ramp"])
def test_preview_pixels_equal_the_numpy_preview_exactly(pipe, tokenizer):
    from maskmamba.pipeline import preview_pixels

    tokenizer = pipe.tokenizer if tokenizer == "pipeline" else _RampTokenizer()
    n = tokenizer.grid**2
    tokens = torch.randint(0, pipe.tokenizer.codebook_size, (1, n))
    mask = torch.rand(1, n) < 0.5
    got = preview_pixels(tokenizer, tokens, mask)[0].numpy()
    assert got.dtype == np.uint8 and got.shape == (128, 128, 3)
    assert np.array_equal(got, _numpy_preview(tokenizer, tokens, mask))


def test_cuda_graphs_need_a_cuda_pipeline(pipe):
    assert not pipe.cuda_graphs
    with pytest.raises(ValueError, match="CUDA"):
        pipe.enable_cuda_graphs()
    assert not pipe.cuda_graphs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_enabled_cuda_graphs_give_the_eager_images(tiny_checkpoint):
    pipe = Pipeline.from_pretrained(path=tiny_checkpoint, device="cuda")
    eager = [np.asarray(r.image) for r in pipe.stream(class_id=1, steps=4, seed=2)]
    pipe.enable_cuda_graphs()
    assert pipe.cuda_graphs
    graphed = [np.asarray(r.image) for r in pipe.stream(class_id=1, steps=4, seed=2)]
    same = sum(np.array_equal(a, b) for a, b in zip(eager, graphed))
    assert same >= 3  # identical kernels; allow one step of argmax tie-breaking from reordered reductions


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_results_handed_out_a_step_late_are_each_steps_own(tiny_checkpoint):
    from maskmamba.models.tokenizer import preview_pixels
    from maskmamba.sampler import guidance, maskgit

    pipe = Pipeline.from_pretrained(path=tiny_checkpoint, device="cuda")
    results = list(pipe.stream(class_id=1, steps=4, seed=2))
    g = pipe.generator
    steps = list(maskgit(guidance(g), pipe.condition(class_id=1), g.grid, g.mask_id, pipe.settings(steps=4, seed=2)))
    assert [r.step for r in results] == [s.index for s in steps] == [1, 2, 3, 4]
    for r, s in zip(results, steps):
        assert torch.equal(r.tokens, s.tokens[0]) and r.latency_ms > 0
        assert np.array_equal(r.mask, s.mask[0].view(g.grid, g.grid).cpu().numpy())
        preview = preview_pixels(pipe.tokenizer, s.prediction[:1], s.mask[:1])[0].cpu().numpy()
        assert np.array_equal(np.asarray(r.image), preview)


def test_settings_start_from_the_checkpoint_default_cfg(tiny_checkpoint, tmp_path):
    import json
    import shutil

    from maskmamba.settings import GPU_STEPS, SamplingSettings

    assert Pipeline.from_pretrained(path=tiny_checkpoint).defaults == SamplingSettings()
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"default_cfg": 1.5}))
    pipe = Pipeline.from_pretrained(path=folder)
    assert pipe.defaults.cfg_scale == 1.5 and pipe.defaults.steps == SamplingSettings().steps
    assert pipe.settings(steps=3) == SamplingSettings(cfg_scale=1.5, steps=3)
    on_gpu = SamplingSettings.for_checkpoint(config | {"default_cfg": 1.5}, "cuda")
    assert on_gpu == SamplingSettings(cfg_scale=1.5, steps=GPU_STEPS) and GPU_STEPS > SamplingSettings().steps
    with pytest.raises(ValueError, match="unknown sampling setting"):
        pipe.settings(cfg=2.0)


def test_graphed_preview_refuses_a_cpu_tokenizer(pipe):
    from maskmamba.graphs import GraphedPreview

    with pytest.raises(ValueError, match="CUDA"):
        GraphedPreview(pipe.tokenizer)


def test_prompt_generation_uses_minilm(pipe):
    image = pipe.generate(prompt="a red apple", steps=2, seed=0)
    assert image.size == (128, 128)
    states, mask = pipe.prompt_encoder.encode(["a red apple"])
    assert states.shape == (1, 16, 384) and mask.sum() == 5


def test_inpaint_keeps_pixels_outside_the_mask(pipe):
    original = pipe.generate(class_id=2, steps=2, seed=1)
    mask = np.zeros((128, 128), dtype=bool)
    mask[32:64, 40:80] = True
    out = pipe.inpaint(original, mask, class_id=4, steps=3, seed=2)
    assert np.array_equal(np.asarray(out)[~mask], np.asarray(original)[~mask])
    assert out.size == (128, 128)


def test_inpaint_accepts_a_larger_image_and_mask(pipe):
    image = Image.new("RGB", (256, 256), (200, 30, 30))
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (0, 0, 64, 64))
    assert pipe.inpaint(image, mask, class_id=0, steps=2).size == (128, 128)


def test_token_mask_covers_every_touched_cell(pipe):
    mask = np.zeros((128, 128), dtype=bool)
    mask[8, 8] = True  # one pixel in cell (1, 1)
    tokens = pipe.token_mask(mask)
    assert tokens.sum() == 1 and tokens[1, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(class_name="no such class"), "unknown class"),
        (dict(class_name="clas 1"), "did you mean"),
        (dict(prompt="   "), "empty"),
        (dict(class_id=99), "class id"),
        (dict(class_id=1, prompt="x"), "exactly one"),
    ],
)
def test_bad_conditions_raise_readable_errors(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe.generate(steps=2, **kwargs)


def test_bad_inpaint_inputs_raise_readable_errors(pipe):
    image = Image.new("RGB", (128, 128), "white")
    with pytest.raises(ValueError, match="the mask is 64x64"):
        pipe.inpaint(image, np.ones((64, 64), dtype=bool), class_id=0)
    with pytest.raises(ValueError, match="empty"):
        pipe.inpaint(image, np.zeros((128, 128), dtype=bool), class_id=0)


def test_from_pretrained_checks_the_variant(tiny_checkpoint):
    with pytest.raises(ValueError, match="not 'transformer'"):
        Pipeline.from_pretrained(variant="transformer", path=tiny_checkpoint)
    with pytest.raises(FileNotFoundError):
        Pipeline.from_pretrained(variant="transformer", path=tiny_checkpoint / "missing")


def test_seeded_generation_is_deterministic(pipe):
    a = pipe.generate(class_id=0, steps=3, seed=11)
    b = pipe.generate(class_id=0, steps=3, seed=11)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert torch.is_tensor(next(pipe.stream(class_id=0, steps=2)).tokens)


def test_model_image_composites_transparency_on_white_at_model_size():
    from maskmamba.pipeline import model_image

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (0, 0, 32, 64))
    out = np.asarray(model_image(image))
    assert out.shape == (128, 128, 3)
    assert (out[:, 100] == 255).all() and (out[:, 10] == (200, 0, 0)).all()


def test_model_image_undoes_a_whole_number_enlargement_exactly():
    from maskmamba.pipeline import model_image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    big = image.resize((512, 512), Image.NEAREST)  # what the demo's inpaint editor shows
    assert np.array_equal(np.asarray(model_image(big)), np.asarray(image))


def test_a_generator_is_refused_with_a_tokenizer_of_another_vocabulary():
    from maskmamba import build_model
    from maskmamba.models.tokenizer import VQTokenizer

    tokenizer = VQTokenizer()
    generator = build_model("uvit", "tiny", num_classes=2, codebook_size=tokenizer.codebook_size + 1)
    with pytest.raises(ValueError, match="predicts .* token ids but the tokenizer has .* codes"):
        Pipeline(generator, tokenizer, ["a", "b"])
