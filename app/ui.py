"""The Gradio page: four tabs (Generate, Compare, Inpaint, Speed) wired to the handlers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from app import media
from app.guards import BodyLimit, CacheJanitor, atomic_cache_writes, limit_jobs_per_client, readable_errors
from app.inputs import (
    MAX_CHOICE_CHARS, DropdownInput, ImageEditorInput, ImageInput, NumberInput, RadioInput, SliderInput, TextInput,
)
from app.handlers import EDITOR_SIDE, MODES, SPEED_REFERENCE, Handlers, downloads_ready
from maskmamba import limits
from maskmamba.configs import VARIANTS
from maskmamba.serving import MAX_PROMPT_CHARS, Runtime
from maskmamba.settings import MAX_SEED, MAX_STEPS

MODEL_CONCURRENCY = 4  # streams advance one model step at a time under the runtime's lock
QUEUE = dict(default_concurrency_limit=2, max_size=limits.QUEUE_SIZE)
DELETE_CACHE = (600, 3600)  # gradio's own sweep of its cache records: every 10 minutes, files over an hour old
DEFAULT_CLASS = "face-smiling"  # the shipped models draw smileys, hearts, flags and clocks best
EXAMPLES = [  # (mode, class, prompt): what the shipped v2 models draw well (looked at, seed 0, both compare models)
    ("Class", "face-smiling", ""), ("Class", "heart", ""), ("Class", "country-flag", ""), ("Class", "time", ""),
    ("Prompt", None, "grinning face"), ("Prompt", None, "red heart"), ("Prompt", None, "a christmas tree"),
]
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="rose")
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#kernels { font-size: 0.9em; opacity: 0.85; }
.chart [data-testid=altair] > div:first-child { width: 100%; }
"""


@dataclass
class ConditionControls:
    """A tab's class-or-prompt and sampler controls."""

    mode: gr.Radio
    class_name: gr.Dropdown
    prompt: gr.Textbox
    cfg_scale: gr.Slider
    steps: gr.Slider
    seed: gr.Number
    randomise: gr.Checkbox
    temperature: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        """In the order the handlers take them, after the variant(s)."""
        return [self.mode, self.class_name, self.prompt, self.cfg_scale, self.steps, self.seed, self.temperature]


def _show_for_mode(mode: str) -> tuple[dict, dict]:
    """Visibility of (class column, prompt column) for a mode."""
    prompt = mode == "Prompt"
    return gr.update(visible=not prompt), gr.update(visible=prompt)


def condition_controls(h: Handlers, classes: list[str], variant: gr.Dropdown) -> ConditionControls:
    """Mode radio, class dropdown with a word search (or prompt box), examples, CFG, iterations, seed, temperature.

    The class and prompt widgets sit in columns that are shown or hidden: an example click resets a
    component's own props, a column's stay."""
    mode = RadioInput(list(MODES), value=MODES[0], label="Condition on", container=False)
    with gr.Column() as class_box:
        default = DEFAULT_CLASS if DEFAULT_CLASS in classes else (classes[0] if classes else None)
        class_name = DropdownInput(classes, value=default, label="Class", filterable=True, allow_custom_value=True,
                                   info="CLDR emoji subgroups; type to filter the names")
        search = TextInput(label="Find a class by word", placeholder="e.g. dog, pizza, heart", max_lines=1,
                           max_length=MAX_CHOICE_CHARS)
        found = gr.Radio([], label="Classes with emoji of that name", visible=False)
    with gr.Column(visible=False) as prompt_box:
        prompt = TextInput(label="Prompt", placeholder="e.g. grinning face", max_lines=2, max_length=MAX_PROMPT_CHARS)
    mode.change(_show_for_mode, mode, [class_box, prompt_box], queue=False, api_visibility="private")
    search.change(h.find_classes, [search, variant], found, queue=False, trigger_mode="always_last",
                  api_visibility="private")
    found.input(lambda name: name, found, class_name, queue=False, api_visibility="private")
    shown = [e for e in EXAMPLES if e[1] is None or e[1] in classes]
    if shown:
        gr.Examples([[m, c or default, p] for m, c, p in shown], inputs=[mode, class_name, prompt],
                    label="Examples: click one, then run", example_labels=[c or f"“{p}”" for _, c, p in shown])
    defaults = h.runtime.defaults(variant.value)  # the CFG scale follows the variant (its checkpoint's default_cfg)
    with gr.Row():
        cfg_scale = SliderInput(0, 10, value=defaults.cfg_scale, step=0.5, label="CFG scale",
                                info="higher: closer to the request, less variety")
        steps = SliderInput(1, MAX_STEPS, value=defaults.steps, step=1, precision=0, label="Iterations")
    with gr.Row():
        temperature = SliderInput(0.1, 3.0, value=defaults.temperature, step=0.1, label="Temperature",
                                  info="lower: safer tokens; higher: more variety")
        seed = NumberInput(defaults.seed, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
    randomise = gr.Checkbox(False, label="Randomise the seed on every run", container=False)
    return ConditionControls(mode, class_name, prompt, cfg_scale, steps, seed, randomise, temperature)


def _run_buttons(label: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        return gr.Button(label, variant="primary", scale=3), gr.Button("Stop", variant="stop", scale=1)


def _latency_plot(label: str, elem_id: str) -> gr.Plot:
    return gr.Plot(label=label, elem_classes="chart", elem_id=elem_id)


def _order_image(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, show_label=False, type="pil", format="png", interactive=False, height=280,
                    elem_id=elem_id, buttons=["fullscreen"])  # the picture carries its own title


def _with_downloads(start: gr.events.Dependency, buttons: list[gr.DownloadButton], run: dict) -> None:
    """Disable the download buttons, run, then enable those that got a file."""
    private = dict(queue=False, api_visibility="private")
    start.then(lambda: downloads_ready(*[None] * len(buttons)), None, buttons, **private).then(**run).then(
        downloads_ready, buttons, buttons, **private)


def _stop(h: Handlers, stop: gr.Button, tab: str) -> None:
    """Stop ends the tab's run after its current step; the run's last update says where it stopped."""
    def request_stop(request: gr.Request) -> None:
        h.stop(tab, request)

    stop.click(request_stop, None, None, queue=False, api_visibility="private")


def _start(button: gr.Button, c: ConditionControls) -> gr.events.Dependency:
    """First event of a run: draw a fresh seed if asked (a private, unqueued step)."""
    return button.click(Handlers.pick_seed, [c.seed, c.randomise], c.seed, queue=False, api_visibility="private")


def variant_choices(runtime: Runtime) -> list[tuple[str, str]]:
    """Dropdown choices (label shown, value sent): each loaded variant's name, size and parameters; the API, like
    the value, takes the plain variant name."""
    return [(runtime.describe(v), v) for v in runtime.variants]


def generate_tab(h: Handlers, variants: list[str], classes: list[str]) -> gr.Image:
    with gr.Row():
        with gr.Column(scale=2):
            variant = DropdownInput(variant_choices(h.runtime), value=variants[0], label="Model variant",
                                    info=VARIANTS[variants[0]].description)
            c = condition_controls(h, classes, variant)
            run, stop = _run_buttons("Generate")
        with gr.Column(scale=3):
            with gr.Row():
                image = ImageInput(label="Live decoding", type="pil", format="png", interactive=False,
                                   height=280, elem_id="gen-image", elem_classes="pixelated",
                                   buttons=["download", "fullscreen"])
                order = _order_image(media.ORDER_TITLE, "gen-order")
            status = gr.Markdown(label="status", elem_id="gen-status")
            plot = _latency_plot("Per-step latency", "gen-plot")
            with gr.Row():
                png = gr.DownloadButton("Download PNG", interactive=False, elem_id="gen-png")
                gif = gr.DownloadButton("Download progression (GIF)", interactive=False, elem_id="gen-gif")
    variant.change(h.variant_chosen, variant, [variant, c.class_name, c.cfg_scale], queue=False, api_visibility="private")
    _with_downloads(_start(run, c), [png, gif], dict(
        fn=h.generate, inputs=[variant, *c.inputs()], outputs=[image, plot, status, png, gif, order],
        api_name="generate", concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY))
    _stop(h, stop, "generate")
    return image


def compare_tab(h: Handlers, variants: list[str], classes: list[str]) -> None:
    left_default = "uvit" if "uvit" in variants else variants[0]
    right_default = next((v for v in variants if v != left_default), left_default)
    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown("Both models decode with the same seed and settings; the page alternates one step of each.")
            with gr.Row():
                left = DropdownInput(variant_choices(h.runtime), value=left_default, label="Left model")
                right = DropdownInput(variant_choices(h.runtime), value=right_default, label="Right model")
            c = condition_controls(h, classes, left)
            run, stop = _run_buttons("Compare")
        with gr.Column(scale=3):
            with gr.Row():
                left_image = gr.Image(label="Left", type="pil", format="png", interactive=False, height=260,
                                      elem_id="compare-left", elem_classes="pixelated")
                right_image = gr.Image(label="Right", type="pil", format="png", interactive=False, height=260,
                                       elem_id="compare-right", elem_classes="pixelated")
            with gr.Row():
                left_order = _order_image("Left: decoding order", "compare-left-order")
                right_order = _order_image("Right: decoding order", "compare-right-order")
            status = gr.Markdown(label="status", elem_id="compare-status")
            plot = _latency_plot("Per-step latency, both models", "compare-plot")
    outputs = [left_image, right_image, plot, status, left_order, right_order]
    left.change(h.default_cfg, left, c.cfg_scale, queue=False, api_visibility="private")
    _start(run, c).then(h.compare, [left, right, *c.inputs()], outputs,
                        api_name="compare", concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
    _stop(h, stop, "compare")


def _example_images(assets: Path) -> list[str]:
    return [str(p) for p in sorted((assets / "examples").glob("*.png"))]


def inpaint_tab(h: Handlers, variants: list[str], classes: list[str], generated: gr.Image) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            editor = ImageEditorInput(
                label="Image: paint over what to regenerate", type="pil", image_mode="RGBA", height=440,
                sources=("upload", "clipboard"), transforms=(), layers=False, elem_id="inpaint-editor",
                canvas_size=(EDITOR_SIDE, EDITOR_SIDE),
                brush=gr.Brush(default_size=48, colors=["#ff2d55"], default_color="#ff2d55", color_mode="fixed"),
                eraser=gr.Eraser(default_size=48),
            )
            use_last = gr.Button("Use the last generated image", size="sm")
            picked = ImageInput(type="pil", visible=False)
            examples = _example_images(h.runtime.assets)
            if examples:
                gr.Examples(examples, inputs=picked, label="Example images: click one, then paint")
            overlay = gr.Image(label="Tokens the mask covers (16x16 grid)", interactive=False, height=256,
                               elem_classes="pixelated", format="png")
            coverage = gr.Markdown("Load an image, then paint over the part to regenerate.", elem_id="coverage")
        with gr.Column(scale=2):
            variant = DropdownInput(variant_choices(h.runtime), value=variants[0], label="Model variant")
            c = condition_controls(h, classes, variant)
            run, stop = _run_buttons("Inpaint")
        with gr.Column(scale=2):
            result = gr.Image(label="Inpainted", type="pil", format="png", interactive=False, height=260,
                              elem_id="inpaint-result", elem_classes="pixelated")
            status = gr.Markdown(label="status", elem_id="inpaint-status")
            order = _order_image("Decoding order of the repainted tokens", "inpaint-order")
            plot = _latency_plot("Per-step latency", "inpaint-plot")
            png = gr.DownloadButton("Download PNG", interactive=False, elem_id="inpaint-png")
    preview = dict(fn=h.mask_preview, inputs=[editor, variant], outputs=[overlay, coverage], trigger_mode="always_last",
                   concurrency_id="preview", concurrency_limit=MODEL_CONCURRENCY, api_visibility="private")
    # an editor value set by a function fires no change event, so loading an image draws the overlay itself;
    # queued, so that the warning "no generated image yet" reaches the page
    load = dict(fn=h.use_image, outputs=[editor, overlay, coverage], concurrency_id="preview",
                concurrency_limit=MODEL_CONCURRENCY, api_visibility="private")
    variant.change(h.default_cfg, variant, c.cfg_scale, queue=False, api_visibility="private")
    use_last.click(inputs=[generated, variant], **load)
    picked.change(inputs=[picked, variant], **load)
    editor.change(**preview)
    _with_downloads(_start(run, c), [png], dict(
        fn=h.inpaint, inputs=[editor, variant, *c.inputs()], outputs=[result, overlay, plot, status, png, order],
        api_name="inpaint", concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY))
    _stop(h, stop, "inpaint")


def speed_tab(h: Handlers) -> None:
    rows, note = h.speed_results()
    gr.Markdown("### Speed against resolution\n" + note)
    if rows is not None:
        ratios, table = h.speed_ratios(rows)
        with gr.Row():
            gr.Plot(media.speed_chart(rows), label="ms per step against image side (log-log)", elem_classes="chart",
                    elem_id="speed-chart")
            if ratios:
                gr.Plot(media.ratio_chart(ratios, SPEED_REFERENCE), label=f"Speed relative to the {SPEED_REFERENCE}",
                        elem_classes="chart", elem_id="ratio-chart")
        if table:
            gr.Markdown(f"{table}\n\nAbove 1x: faster than the {SPEED_REFERENCE} at that side.")
    on_gpu = h.runtime.device.type == "cuda"
    label = "Run a live benchmark: 12 iterations with CFG per loaded variant" if on_gpu else \
        "Run a small CPU timing (no GPU on this server): 12 iterations with CFG per loaded variant"
    gr.Markdown("### Live timing of the loaded variants")
    button = gr.Button(label)
    bars = gr.Plot(label="ms per step (median)", elem_classes="chart", elem_id="live-bars")
    table = gr.Markdown()
    button.click(lambda: h.live_benchmark(repeats=3 if on_gpu else 1), None, [bars, table],
                 concurrency_id="benchmark", concurrency_limit=1, api_visibility="private")


def kernels_line(runtime: Runtime) -> str:
    k = runtime.kernels
    return (f"Running on **{k['device']}** · {k['dtype']} · selective scan: **{k['scan']}** · "
            f"attention: **{k['attention']}** · CUDA graphs: **{k['cuda_graphs']}** · "
            f"variants loaded: {'; '.join(map(runtime.describe, runtime.variants))}")


def disabled_note(disabled: dict[str, str]) -> str:
    """Markdown naming each checkpoint that could not load and why (also in the server's log)."""
    lines = "\n".join(f"- **{name}**: {why}" for name, why in disabled.items())
    return f"⚠️ Not available on this server (the other models serve):\n{lines}"


def build_demo(runtime: Runtime) -> gr.Blocks:
    """The whole page over a loaded (and preferably warmed-up) runtime."""
    h = Handlers(runtime)
    variants = runtime.variants
    classes = runtime.class_names(variants[0])
    with gr.Blocks(title="MaskMamba demo", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("## MaskMamba: masked image generation with hybrid Mamba-Transformer models\n"
                    "Watch MaskGIT-style decoding step by step, compare models live, and inpaint painted regions "
                    "([paper](https://arxiv.org/abs/2409.19937)).")
        gr.Markdown(kernels_line(runtime), elem_id="kernels")
        if runtime.disabled:
            gr.Markdown(disabled_note(runtime.disabled), elem_id="disabled")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                generated = generate_tab(h, variants, classes)
            with gr.Tab("Compare", id="compare"):
                compare_tab(h, variants, classes)
            with gr.Tab("Inpaint", id="inpaint"):
                inpaint_tab(h, variants, classes, generated)
            with gr.Tab("Speed", id="speed"):
                speed_tab(h)
    demo.queue(**QUEUE)
    limit_jobs_per_client(demo._queue)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False) -> CacheJanitor:
    """Serve the page with the demo's theme and styles, the request and upload limits, and the cache janitor."""
    Image.MAX_IMAGE_PIXELS = limits.MAX_PIXELS  # any decode that skipped the header check still stops at 2x this
    readable_errors()
    atomic_cache_writes()
    janitor = CacheJanitor(demo)
    janitor.start()  # before launch, which blocks unless prevent_thread_lock
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock,
                theme=THEME, css=CSS, show_error=False, quiet=prevent_thread_lock,
                max_file_size=limits.MAX_UPLOAD_BYTES, app_kwargs={"middleware": [Middleware(BodyLimit)]})
    return janitor
