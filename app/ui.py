"""The Gradio page: four tabs (Generate, Compare, Inpaint, Speed) wired to the handlers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from app.handlers import EDITOR_SIDE, MODES, Handlers
from maskmamba.configs import VARIANTS
from maskmamba.serving import Runtime
from maskmamba.settings import MAX_SEED, MAX_STEPS, SamplingSettings

MODEL_CONCURRENCY = 4  # streams advance one model step at a time under the runtime's lock
MAX_UPLOAD = "10mb"
QUEUE = dict(default_concurrency_limit=2, max_size=48)
PROMPT_EXAMPLES = ["a red apple", "smiling face with heart eyes", "a sunflower", "a cat face", "a rocket in the sky"]
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="rose")
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#kernels { font-size: 0.9em; opacity: 0.85; }
"""


class ImageEditorInput(gr.ImageEditor):
    """gr.ImageEditor that reports an upload it cannot decode as a readable error (a gradio template)."""

    is_template = True  # the page draws it with gr.ImageEditor's front end

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (OSError, ValueError, Image.DecompressionBombError):
            raise gr.Error("that upload is not an image this demo can read: use a PNG, JPEG or WebP file",
                           print_exception=False) from None


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
    """Visibility of (class dropdown, prompt box with its examples) for a mode."""
    prompt = mode == "Prompt"
    return gr.update(visible=not prompt), gr.update(visible=prompt)


def condition_controls(classes: list[str]) -> ConditionControls:
    """Mode radio, class dropdown (filterable) or prompt box with examples, CFG, iterations, seed, temperature."""
    mode = gr.Radio(list(MODES), value=MODES[0], label="Condition on", container=False)
    class_name = gr.Dropdown(classes, value=classes[0] if classes else None, label="Class", filterable=True,
                             allow_custom_value=True, info="Type to filter")
    with gr.Column(visible=False) as prompt_box:  # hide the column: an example click resets the textbox's own props
        prompt = gr.Textbox(label="Prompt", placeholder="e.g. a red apple", max_lines=2)
        gr.Examples(PROMPT_EXAMPLES, inputs=prompt, label="Example prompts")
    mode.change(_show_for_mode, mode, [class_name, prompt_box], queue=False, api_visibility="private")
    defaults = SamplingSettings()
    with gr.Row():
        cfg_scale = gr.Slider(0, 10, value=defaults.cfg_scale, step=0.5, label="CFG scale")
        steps = gr.Slider(1, MAX_STEPS, value=defaults.steps, step=1, precision=0, label="Iterations")
    with gr.Row():
        temperature = gr.Slider(0.1, 3.0, value=defaults.temperature, step=0.1, label="Temperature")
        seed = gr.Number(defaults.seed, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
    randomise = gr.Checkbox(False, label="Randomise the seed on every run", container=False)
    return ConditionControls(mode, class_name, prompt, cfg_scale, steps, seed, randomise, temperature)


def _run_buttons(label: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        return gr.Button(label, variant="primary", scale=3), gr.Button("Stop", variant="stop", scale=1)


def _latency_plot(label: str, by_model: bool = False) -> gr.LinePlot:
    return gr.LinePlot(x="step", y="ms", color="model" if by_model else None, label=label, x_title="step",
                       y_title="ms", height=320 if by_model else 220)


def _start(button: gr.Button, c: ConditionControls) -> gr.events.Dependency:
    """First event of a run: draw a fresh seed if asked (a private, unqueued step)."""
    return button.click(Handlers.pick_seed, [c.seed, c.randomise], c.seed, queue=False, api_visibility="private")


def generate_tab(h: Handlers, variants: list[str], classes: list[str]) -> gr.Image:
    with gr.Row():
        with gr.Column(scale=2):
            variant = gr.Dropdown(variants, value=variants[0], label="Model variant", info=VARIANTS[variants[0]].description)
            c = condition_controls(classes)
            run, stop = _run_buttons("Generate")
        with gr.Column(scale=3):
            with gr.Row():
                image = gr.Image(label="Live decoding", type="pil", format="png", interactive=False,
                                 height=320, elem_id="gen-image", elem_classes="pixelated",
                                 buttons=["download", "fullscreen"])
                plot = _latency_plot("Per-step latency")
            status = gr.Markdown(label="status", elem_id="gen-status")
            with gr.Row():
                png = gr.DownloadButton("Download PNG")
                gif = gr.DownloadButton("Download progression (GIF)")
    variant.change(h.variant_chosen, variant, [variant, c.class_name], queue=False, api_visibility="private")
    event = _start(run, c).then(h.generate, [variant, *c.inputs()], [image, plot, status, png, gif],
                                api_name="generate", concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
    stop.click(None, cancels=[event], queue=False, api_visibility="private")
    return image


def compare_tab(h: Handlers, variants: list[str], classes: list[str]) -> None:
    left_default = "uvit" if "uvit" in variants else variants[0]
    right_default = next((v for v in variants if v != left_default), left_default)
    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown("Both models decode with the same seed and settings; the page alternates one step of each.")
            with gr.Row():
                left = gr.Dropdown(variants, value=left_default, label="Left model")
                right = gr.Dropdown(variants, value=right_default, label="Right model")
            c = condition_controls(classes)
            run, stop = _run_buttons("Compare")
        with gr.Column(scale=3):
            with gr.Row():
                left_image = gr.Image(label="Left", type="pil", format="png", interactive=False, height=300,
                                      elem_id="compare-left", elem_classes="pixelated")
                right_image = gr.Image(label="Right", type="pil", format="png", interactive=False, height=300,
                                       elem_id="compare-right", elem_classes="pixelated")
            status = gr.Markdown(label="status", elem_id="compare-status")
            plot = _latency_plot("Per-step latency, both models", by_model=True)
    event = _start(run, c).then(h.compare, [left, right, *c.inputs()], [left_image, right_image, plot, status],
                                api_name="compare", concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
    stop.click(None, cancels=[event], queue=False, api_visibility="private")


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
            examples = _example_images(h.runtime.assets)
            picked = gr.Image(type="pil", visible=False)
            if examples:
                gr.Examples(examples, inputs=picked, label="Example images")
            overlay = gr.Image(label="Tokens the mask covers (16x16 grid)", interactive=False, height=256,
                               elem_classes="pixelated", format="png")
            coverage = gr.Markdown("Load an image, then paint over the part to regenerate.", elem_id="coverage")
        with gr.Column(scale=2):
            variant = gr.Dropdown(variants, value=variants[0], label="Model variant")
            c = condition_controls(classes)
            run, stop = _run_buttons("Inpaint")
        with gr.Column(scale=2):
            result = gr.Image(label="Inpainted", type="pil", format="png", interactive=False, height=300,
                              elem_id="inpaint-result", elem_classes="pixelated")
            status = gr.Markdown(label="status", elem_id="inpaint-status")
            plot = _latency_plot("Per-step latency")
            png = gr.DownloadButton("Download PNG")
    preview = dict(fn=h.mask_preview, inputs=[editor, variant], outputs=[overlay, coverage], trigger_mode="always_last",
                   concurrency_id="preview", concurrency_limit=MODEL_CONCURRENCY, api_visibility="private")
    # an editor value set by a function fires no change event, so loading an image refreshes the overlay itself
    use_last.click(h.editor_value, generated, editor, queue=False, api_visibility="private").then(**preview)
    picked.change(h.editor_value, picked, editor, queue=False, api_visibility="private").then(**preview)
    editor.change(**preview)
    event = _start(run, c).then(h.inpaint, [editor, variant, *c.inputs()], [result, overlay, plot, status, png],
                                api_name="inpaint", concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
    stop.click(None, cancels=[event], queue=False, api_visibility="private")


def speed_tab(h: Handlers) -> None:
    frame, note = h.speed_results()
    gr.Markdown("### Speed against resolution\n" + note)
    if frame is not None:
        gr.LinePlot(frame, x="side", y="ms", color="model", x_title="image side (pixels)", y_title="ms per step",
                    label="Speed against resolution", height=320)
    on_gpu = h.runtime.device.type == "cuda"
    label = "Run a live benchmark: 12 iterations with CFG per loaded variant" if on_gpu else \
        "Run a small CPU timing (no GPU on this server): 12 iterations with CFG per loaded variant"
    gr.Markdown("### Live timing of the loaded variants")
    button = gr.Button(label)
    bars = gr.BarPlot(x="model", y="ms_per_step", label="ms per step (median)", y_title="ms per step", y_lim=[0, None],
                      height=260)
    table = gr.Markdown()
    button.click(lambda: h.live_benchmark(repeats=3 if on_gpu else 1), None, [bars, table],
                 concurrency_id="benchmark", concurrency_limit=1, api_visibility="private")


def kernels_line(runtime: Runtime) -> str:
    k = runtime.kernels
    return (f"Running on **{k['device']}** · {k['dtype']} · selective scan: **{k['scan']}** · "
            f"attention: **{k['attention']}** · CUDA graphs: **{k['cuda_graphs']}** · "
            f"variants loaded: {', '.join(runtime.variants)}")


def build_demo(runtime: Runtime) -> gr.Blocks:
    """The whole page over a loaded (and preferably warmed-up) runtime."""
    h = Handlers(runtime)
    variants = runtime.variants
    classes = runtime.class_names(variants[0])
    with gr.Blocks(title="MaskMamba demo", analytics_enabled=False) as demo:
        gr.Markdown("## MaskMamba: masked image generation with hybrid Mamba-Transformer models\n"
                    "Watch MaskGIT-style decoding step by step, compare models live, and inpaint painted regions "
                    "([paper](https://arxiv.org/abs/2409.19937)).")
        gr.Markdown(kernels_line(runtime), elem_id="kernels")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                generated = generate_tab(h, variants, classes)
            with gr.Tab("Compare", id="compare"):
                compare_tab(h, variants, classes)
            with gr.Tab("Inpaint", id="inpaint"):
                inpaint_tab(h, variants, classes, generated)
            with gr.Tab("Speed", id="speed"):
                speed_tab(h)
    return demo.queue(**QUEUE)


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False) -> None:
    """Serve the page with the demo's theme and styles."""
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock,
                theme=THEME, css=CSS, show_error=False, quiet=prevent_thread_lock, max_file_size=MAX_UPLOAD)
