"""Serving runtime (no gradio): loading a dev-assets folder, step streams, compare, inpaint, readable errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from maskmamba.dev_assets import DEV_CLASSES, DEV_VARIANTS
from maskmamba.serving import Runtime, Settings, find_variants, resolve_device

STEPS = 3


def _run(runtime, variant="maskmamba-serial-half", **kw):
    return list(runtime.generate_steps(variant, Settings(**({"class_name": DEV_CLASSES[1], "steps": STEPS} | kw))))


def test_loads_every_checkpoint_in_registry_order(runtime, assets):
    assert runtime.variants == list(DEV_VARIANTS) == find_variants(assets)  # tokenizer/ has a config.json too
    assert set(runtime.pipelines) == set(DEV_VARIANTS)
    assert runtime.class_names("uvit") == list(DEV_CLASSES)
    tokenizers = {id(p.tokenizer) for p in runtime.pipelines.values()}
    assert len(tokenizers) == 1


def test_kernels_name_the_cpu_fallbacks(runtime):
    kernels = runtime.kernels
    assert kernels["device"].startswith("cpu") and kernels["dtype"] == "float32"
    assert kernels["scan"] == "torch reference" and kernels["attention"] == "PyTorch SDPA"
    assert kernels["cuda_graphs"] == "off"


def test_no_checkpoints_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path.name)):
        Runtime(tmp_path, "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_readable():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device(None).type == "cpu"


def test_generate_streams_every_step_until_nothing_is_masked(runtime):
    results = _run(runtime)
    assert [r.step for r in results] == list(range(1, STEPS + 1))
    masked = [int(r.mask.sum()) for r in results]
    assert masked == sorted(masked, reverse=True) and masked[0] > 0 and masked[-1] == 0
    assert all(r.image.size == (128, 128) and r.latency_ms > 0 for r in results)


def test_same_seed_same_image_other_seed_differs(runtime):
    a, b, c = (np.asarray(_run(runtime, seed=s)[-1].image) for s in (3, 3, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_compare_alternates_and_matches_separate_runs(runtime):
    pair = ("uvit", "maskmamba-parallel-2")
    settings = Settings(class_name=DEV_CLASSES[0], steps=STEPS, seed=7)
    stream = list(runtime.compare_steps(pair, settings))
    assert [v for v, _ in stream] == list(pair) * STEPS
    for variant in pair:
        steps = [r for v, r in stream if v == variant]
        alone = list(runtime.generate_steps(variant, settings))
        assert np.array_equal(np.asarray(steps[-1].image), np.asarray(alone[-1].image))


def test_inpaint_keeps_pixels_outside_the_mask(runtime, assets):
    image = Image.open(assets / "examples" / "sun.png")
    mask = np.zeros((128, 128), dtype=bool)
    mask[40:72, 24:88] = True
    results = list(runtime.inpaint_steps("uvit", image, mask, Settings(class_name=DEV_CLASSES[2], steps=STEPS)))
    assert len(results) == STEPS
    out = np.asarray(results[-1].image)
    assert np.array_equal(out[~mask], np.asarray(image.convert("RGB"))[~mask])
    assert not np.array_equal(out[mask], np.asarray(image.convert("RGB"))[mask])
    assert runtime.token_mask("uvit", mask).sum() == 4 * 8  # token rows 5..8 (pixels 40..71), columns 3..10 (24..87)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(class_name=None, prompt="   "), "prompt is empty"),
        (dict(class_name="food-fruits"), "did you mean food-fruit"),
        (dict(class_name=""), "no class chosen"),
        (dict(steps=0), "steps must be an integer from 1 to 256"),
        (dict(steps=10_000), "steps must be an integer from 1 to 256"),
        (dict(cfg_scale=-1.0), "CFG scale must be a finite number >= 0"),
        (dict(cfg_scale=math.nan), "CFG scale must be a finite number >= 0"),
        (dict(temperature=0.0), "temperature must be"),
        (dict(seed=-1), "seed must be an integer"),
    ],
)
def test_bad_settings_are_readable_value_errors_before_any_step(runtime, kwargs, message):
    settings = Settings(**({"class_name": DEV_CLASSES[0], "steps": STEPS} | kwargs))
    with pytest.raises(ValueError, match=message):
        runtime.generate_steps("uvit", settings)


def test_other_bad_requests_are_readable(runtime, assets):
    ok = Settings(class_name=DEV_CLASSES[0], steps=STEPS)
    with pytest.raises(ValueError, match="not loaded; choose one of: maskmamba-serial-half"):
        runtime.generate_steps("transformer", ok)
    with pytest.raises(ValueError, match="two different variants"):
        next(runtime.compare_steps(("uvit", "uvit"), ok))
    image = Image.open(assets / "examples" / "sun.png")
    with pytest.raises(ValueError, match="the mask is 64x64 but the image is 128x128"):
        next(runtime.inpaint_steps("uvit", image, np.ones((64, 64), dtype=bool), ok))
    with pytest.raises(ValueError, match="mask is empty"):
        next(runtime.inpaint_steps("uvit", image, np.zeros((128, 128), dtype=bool), ok))
    assert len(_run(runtime)) == STEPS  # still serving


def test_warm_up_shares_one_prompt_encoder_and_prompts_generate(runtime):
    warm = runtime.warm_up(steps=1)
    assert set(warm) == set(DEV_VARIANTS) and all(ms > 0 for ms in warm.values())
    encoders = {id(p.prompt_encoder) for p in runtime.pipelines.values()}
    assert len(encoders) == 1
    results = _run(runtime, "maskmamba-parallel-2", class_name=None, prompt="a red apple")
    assert len(results) == STEPS and results[-1].mask.sum() == 0


def test_benchmark_times_every_variant(runtime):
    timings = runtime.benchmark(steps=2, repeats=1)
    assert [t.variant for t in timings] == list(DEV_VARIANTS)
    assert all(len(t.step_ms) == 2 and 0 < t.model_ms <= t.wall_ms for t in timings)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runtime_uses_graphs_and_bf16(assets):
    runtime = Runtime(assets, "cuda")
    runtime.warm_up(steps=2)
    kernels = runtime.kernels
    assert kernels["device"].startswith("cuda") and kernels["dtype"] == "bfloat16" and kernels["cuda_graphs"] == "on"
    assert all(p.cuda_graphs for p in runtime.pipelines.values())
    assert len({id(p._side) for p in runtime.pipelines.values()}) == 1  # the shared preview graph: one stream
    for variant in DEV_VARIANTS:
        results = list(runtime.generate_steps(variant, Settings(class_name=DEV_CLASSES[0], steps=12)))
        assert len(results) == 12 and results[-1].mask.sum() == 0


def test_settings_share_the_sampling_defaults_and_summaries_take_medians(runtime):
    from maskmamba.serving import Timing, summarise
    from maskmamba.settings import SamplingSettings

    assert Settings(class_name="x").sampling() == SamplingSettings() == runtime.defaults("uvit")
    rows = summarise([Timing("a", [1.0, 3.0], 10.0), Timing("a", [2.0, 2.0], 30.0), Timing("b", [5.0], 6.0),
                      Timing("a", [9.0, 9.0], 20.0)])
    assert rows == [
        {"model": "a", "ms_per_step": 2.0, "model_ms": 4.0, "wall_ms": 20.0, "runs": 3},
        {"model": "b", "ms_per_step": 5.0, "model_ms": 5.0, "wall_ms": 6.0, "runs": 1},
    ]


def test_host_memory_is_released_off_the_request_path_once_idle(runtime, monkeypatch):
    import time

    import maskmamba.serving as serving

    released = []
    monkeypatch.setattr(serving, "release_memory", lambda device=None: released.append(time.monotonic()))
    monkeypatch.setattr(serving, "IDLE_RELEASE_S", 0.2)
    _run(runtime)
    ended = time.monotonic()
    assert released == []  # not inside the stream: a full collection would delay every generation
    _run(runtime)  # a stream starting within the idle window postpones the release
    time.sleep(0.6)
    assert len(released) == 1 and released[0] - ended >= 0.2


def test_each_variant_is_described_by_its_size_and_parameters(runtime):
    from maskmamba import build_model
    from maskmamba.modules import count_params

    for variant in DEV_VARIANTS:
        params = count_params(build_model(variant, "tiny", num_classes=len(DEV_CLASSES)))
        assert runtime.describe(variant) == f"{variant} · tiny, {params / 1e6:.1f}M params"
    with pytest.raises(ValueError, match="variant 'transformer' is not loaded"):
        runtime.describe("transformer")
