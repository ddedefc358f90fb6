"""CUDA out of memory during a request: that request gets a readable error, its memory is freed, and the next
request succeeds. Runs on the GPU machine without gradio (the handler check is skipped when gradio is missing)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from maskmamba.dev_assets import DEV_CLASSES, make_dev_assets
from maskmamba.serving import OUT_OF_MEMORY, OutOfMemory, Runtime, Settings

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
VARIANT = "maskmamba-serial-half"
STEPS = 4


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = Runtime(make_dev_assets(tmp_path_factory.mktemp("dev-assets")), "cuda")
    runtime.warm_up()  # CUDA graphs captured, as the demo serves
    return runtime


def settings() -> Settings:
    return Settings(class_name=DEV_CLASSES[1], steps=STEPS, seed=3)


def _oom_after_first_step(monkeypatch, runtime: Runtime) -> list[int]:
    """Make the variant's next stream allocate more than the whole card after its first step (a real CUDA
    out-of-memory error inside the request path); returns a list that counts the forced failures."""
    pipe = runtime.pipelines[VARIANT]
    real_stream, forced = pipe.stream, []

    def greedy_stream(*args, **kwargs):
        stream = real_stream(*args, **kwargs)
        yield next(stream)
        held = torch.empty(8 * 1024**2, device="cuda")  # 32 MiB the failure must release
        forced.append(held.numel())
        torch.empty(2 * torch.cuda.get_device_properties(0).total_memory, dtype=torch.uint8, device="cuda")
        yield from stream  # never reached

    monkeypatch.setattr(pipe, "stream", greedy_stream)
    return forced


def test_out_of_memory_is_readable_frees_memory_and_the_next_request_succeeds(runtime, monkeypatch):
    assert len(list(runtime.generate_steps(VARIANT, settings()))) == STEPS
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    forced = _oom_after_first_step(monkeypatch, runtime)
    stream = runtime.generate_steps(VARIANT, settings())
    assert next(stream).step == 1
    with pytest.raises(OutOfMemory, match="ran out of memory") as err:
        next(stream)
    assert forced == [8 * 1024**2] and str(err.value) == OUT_OF_MEMORY
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before < 1024**2  # the 32 MiB the request held are freed
    monkeypatch.undo()
    after = list(runtime.generate_steps(VARIANT, settings()))
    assert len(after) == STEPS and after[-1].mask.sum() == 0


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed here")
def test_out_of_memory_through_the_handler_is_a_readable_gradio_error(runtime, monkeypatch):
    import gradio as gr

    from app.handlers import Handlers

    handlers = Handlers(runtime)
    args = (VARIANT, "Class", DEV_CLASSES[1], "", 3.0, STEPS, 3, 1.0)
    _oom_after_first_step(monkeypatch, runtime)
    updates = handlers.generate(*args)
    next(updates)
    with pytest.raises(gr.Error, match="ran out of memory"):
        next(updates)
    monkeypatch.undo()
    assert len(list(handlers.generate(*args))) == STEPS
