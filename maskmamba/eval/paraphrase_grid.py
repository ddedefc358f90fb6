"""A labelled picture of every paraphrase prompt drawn by one shipped variant, or by two side by side (what the
README shows).

python -m maskmamba.eval paraphrase-grid --variant V [--matched] [--assets assets] [--against FOLDER] [--out PNG]
    [--paraphrases assets/eval/paraphrases.json] [--steps 12] [--seed 0] [--device cpu]

With --against FOLDER (a generator folder, named as its variant), every tile holds the prompt drawn by both models
side by side, --variant's on the left (a comparison at equal settings, so both decode through --assets' tokenizer).

Seed 0 for every prompt, CFG at the checkpoint's default (`default_cfg` in its config.json), 12 iterations. Each
prompt is drawn as written (V_paraphrases.png), or with --matched as the demo draws it: conditioned on its closest
known caption (`<set>.matched.json`, maskmamba.prompt_match), labelled with the prompt (V_paraphrases_matched.png). Saved
as a 128-colour PNG (about a sixth of the full-colour file) because it ships in assets/, which has a size budget.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from maskmamba.eval.paraphrases import PARAPHRASES, Paraphrases, load_matched, matched_path
from maskmamba.settings import SamplingSettings
from maskmamba.text_encoder import PromptEncoder

TILE, LABEL_HEIGHT, COLUMNS = 128, 28, 10
PALETTE_COLOURS = 128


def labelled_grid(images: list[Image.Image], labels: list[str], columns: int = COLUMNS, per_tile: int = 1,
                  title: str = "") -> Image.Image:
    """Tiles of `per_tile` consecutive images of TILE pixels side by side, each tile with its label underneath,
    `columns` tiles to a row, on white, under a `title` line when one is given."""
    width, top = per_tile * TILE, LABEL_HEIGHT if title else 0
    rows = -(-len(labels) // columns)
    sheet = Image.new("RGB", (columns * width, top + rows * (TILE + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((3, 7), title, fill="black")
    limit = 22 * per_tile
    for i, label in enumerate(labels):
        x, y = (i % columns) * width, top + (i // columns) * (TILE + LABEL_HEIGHT)
        for j, image in enumerate(images[i * per_tile : (i + 1) * per_tile]):
            sheet.paste(image.convert("RGB").resize((TILE, TILE)), (x + j * TILE, y))
        text = label if len(label) <= limit else label[: limit - 1] + "…"
        draw.text((x + 3, y + TILE + 7), text, fill="black")
    return sheet


def compact(sheet: Image.Image) -> Image.Image:
    """The sheet in a PALETTE_COLOURS-colour palette, without dithering (flat emoji colours survive it)."""
    return sheet.convert("RGB").quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def paraphrase_grid(
    variant: str, assets: str | Path, paraphrases: str | Path, steps: int = SamplingSettings.steps, seed: int = 0, device: str = "cpu",
    prompt_encoder: PromptEncoder | None = None, matched: bool = False, against: str | Path | None = None,
) -> Image.Image:
    """Every paraphrase prompt drawn by the shipped `variant` at its default CFG, one seed, labelled with the prompt;
    `matched`: conditioned on the prompt's matched caption, as the demo does; `against`: a second generator folder
    whose drawing of each prompt sits to the right of the first's, decoded by the first's tokenizer. Both models
    load before either draws, so a folder that cannot load fails at once."""
    from maskmamba.pipeline import Pipeline

    para = Paraphrases.load(paraphrases)
    texts = load_matched(paraphrases) if matched else para.prompts
    if texts is None:
        raise SystemExit(f"no {matched_path(paraphrases)}: run python -m maskmamba.eval paraphrase-states first")
    pipelines = [Pipeline.from_pretrained(variant, assets=assets, device=device, prompt_encoder=prompt_encoder)]
    if against:
        pipelines.append(Pipeline.from_pretrained(Path(against).name, path=against, assets=assets, device=device,
                                                  tokenizer=pipelines[0].tokenizer, prompt_encoder=prompt_encoder))
    drawn = [[pipeline.generate(prompt=text, steps=steps, seed=seed) for text in texts] for pipeline in pipelines]
    if not against:
        return labelled_grid(drawn[0], para.prompts)
    title = f"left: {variant} ({Path(assets) / variant}); right: {Path(against).name} ({against})"
    pairs = [image for both in zip(*drawn) for image in both]
    return labelled_grid(pairs, para.prompts, columns=COLUMNS // 2, per_tile=2, title=title)


def main(argv: list[str]) -> Path:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval paraphrase-grid", description=paraphrase_grid.__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--assets", default="assets")
    p.add_argument("--paraphrases", default=str(PARAPHRASES))
    p.add_argument("--matched", action="store_true", help="draw each prompt's matched caption, as the demo does")
    p.add_argument("--against", default=None, help="a second generator folder, drawn beside --variant (--out required)")
    p.add_argument("--out", default=None, help="PNG path (default assets/results/<variant>_paraphrases[_matched].png)")
    p.add_argument("--steps", type=int, default=SamplingSettings.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.against and not args.out:
        p.error("--against needs --out: the default path names one variant")
    out = Path(args.out or f"assets/results/{args.variant}_paraphrases{'_matched' if args.matched else ''}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = paraphrase_grid(args.variant, args.assets, args.paraphrases, args.steps, args.seed, args.device,
                            matched=args.matched, against=args.against)
    compact(sheet).save(out, optimize=True)
    print(f"wrote {out}")
    return out
