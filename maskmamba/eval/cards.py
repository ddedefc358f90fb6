"""Model cards written from the results (issue 14): assets/<variant>/README.md for each shipped generator.

python -m maskmamba.eval cards [--assets assets] [--results assets/results/generators.json]
    [--dataset assets/results/dataset.json] [--tokenizer assets/tokenizer] [--variants a,b] [--notes FILE]

Every figure comes from a file: the variant's config.json and training.json, the weights file present, the
parameter count of the model its config builds, the `shipped` and `variants` entries of the generators results,
the data set's summary and the tokenizer's config. --variants (default: every variant in `shipped`) must all be
in `shipped`. --notes is a JSON object {variant: "what still looks wrong"}, one sentence added to that card.
The output is deterministic: the same files give the same bytes.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from maskmamba.configs import VARIANTS
from maskmamba.models import GeneratorConfig, check_tokenizer, generator_class, read_config, stored_formats
from maskmamba.models.quantize import GROUP, MAX_FILE_BYTES, weights_files
from maskmamba.models.tokenizer import FSQ
from maskmamba.modules import count_params
from maskmamba.settings import SamplingSettings

TRAINING_KEYS = ("step", "done", "minutes", "best_val_loss", "best_step", "batch", "steps_planned", "exported_step")
SHIPPED_KEYS = ("fid", "class_acc", "prompt_top5", "paraphrase_top5", "best_cfg", "storage")
VARIANT_KEYS = ("fid", "best_cfg", "n_images", "n_prompts", "n_paraphrase_images", "steps", "command")
STORAGE = {  # storage format -> how its weights are kept
    "fp32": "in fp32",
    "fp16": "in fp16",
    "int8": "weight-only int8 with per-row fp16 scales",
    "int4": f"weight-only int4 with fp16 scales per group of {GROUP} inputs",
}
SHARE_ALIKE = "CC-BY-SA-4.0"
CLDR_CREDIT = "Unicode CLDR annotations (the class names and the prompt captions)"  # unless the data names its catalogue
ENCODER_CREDIT = "all-MiniLM-L6-v2, the prompt encoder (Apache-2.0)"
FRONT_MATTER = """---
license: cc-by-sa-4.0
library_name: maskmamba
tags: [masked-image-generation, maskgit, mamba, emoji]
---
"""


class CardError(ValueError):
    """An input that a card cannot be written from, with what is wrong and where."""


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CardError(f"{path} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CardError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CardError(f"{path} must hold a JSON object")
    return data


def need(record: dict, keys: tuple[str, ...], where: str) -> dict:
    """`record`, refused with the missing keys named when any of `keys` is absent."""
    missing = [k for k in keys if k not in record]
    if missing:
        raise CardError(f"{where} lacks {', '.join(missing)}")
    return record


@dataclass(frozen=True)
class Sources:
    """What every card shares: the results, the data set summary, the tokenizer and where they were read."""

    results: dict
    dataset: dict
    tokenizer_codes: int
    tokenizer_levels: list[int]
    results_path: Path
    tokenizer_path: Path

    @classmethod
    def read(cls, results: Path, dataset: Path, tokenizer: Path) -> Sources:
        levels = need(read_json(tokenizer / "config.json"), ("levels",), str(tokenizer / "config.json"))["levels"]
        data = need(read_json(dataset), ("n_images", "styles", "splits", "sources"), str(dataset))
        need(data["splits"], ("train",), f"{dataset}: splits")
        for i, source in enumerate(data["sources"]):
            need(source, ("style", "package", "version", "licence", "credit"), f"{dataset}: sources[{i}]")
        scores = need(read_json(results), ("classifier_real_acc", "shipped", "variants"), str(results))
        return cls(scores, data, FSQ(tuple(levels)).codebook_size, list(levels), results, tokenizer)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def num(x: float) -> str:
    """A count with thousands separators, or a float as written (2.0 -> 2)."""
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def join_and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(filter(None, (", ".join(items[:-1]), items[-1])))


def storage_line(storage: str, folder: Path) -> str:
    loads = "dequantises them" if storage.startswith("int") else "loads them"
    paths = weights_files(folder, storage)
    files = join_and([f"`{p.name}`" for p in paths])
    shards = f", in shards under {MAX_FILE_BYTES / 1e6:g} MB each" if len(paths) > 1 else ""
    return (f"Weights are stored {STORAGE[storage]} ({files}{shards}); "
            f"`maskmamba.load_generator(\"{folder}\")` {loads}.")


def training_runs(t: dict) -> list[dict]:
    """The training.json records of every run that led to these weights, first to last: each run started with
    `--init` records the training.json of the weights it started from."""
    earlier = (t.get("init") or {}).get("training")
    return [*training_runs(earlier), t] if earlier else [t]


def exported_step(run: dict) -> int:
    """The step whose EMA a run exported (the next run starts from it); older records without it: the last step."""
    return run.get("exported_step", run["step"])


def run_steps(run: dict) -> str:
    """'10,990' or, where the export came earlier, '10,990 (exported at 10,650)'."""
    at = exported_step(run)
    return f"{run['step']:,}" + (f" (exported at {at:,})" if at < run["step"] else "")


def training_lines(t: dict, n_train: int, curves: Path) -> list[str]:
    runs = training_runs(t)
    seen = sum(exported_step(r) for r in runs) * t["batch"]  # what the shipped weights' lineage trained on
    status = "" if t["done"] else f", stopped before the {t['steps_planned']:,} planned"
    if len(runs) == 1:
        how, minutes, which = f"Trained for {t['step']:,} steps of batch {t['batch']:,}{status}", "the run is", ""
    else:
        labels = [run_steps(r) for r in runs[:-1]] + [f"{t['step']:,}"]  # the last run's export is told below
        how = (f"Trained in {len(runs)} runs of batch {t['batch']:,}, each from the last one's weights (`--init`): "
               f"{labels[0]} steps from scratch, then {', then '.join(labels[1:])}{status}")
        minutes, which = "each run is", " of the last run"
    times = join_and([f"{r['minutes']:g}" for r in runs])
    lines = [
        f"{how} ({seen:,} images seen by these weights, {seen / n_train:.1f} passes over the {n_train:,} training "
        f"images); the recorded wall-clock time of the command that finished {minutes} {times} min. The shipped "
        f"weights are the EMA at step {t['exported_step']:,}{which}, whose best held-out masked-token loss was "
        f"{t['best_val_loss']:g} at step {t['best_step']:,}.",
    ]
    if curves.is_file():
        lines.append(f"Training and held-out loss against images seen: `{curves}`.")
    return lines


def _teacher(teacher: dict) -> str:
    """A teacher as a run's record names it: its size and variant."""
    return f"the `{teacher['size']}` `{teacher['variant']}` generator"


def training_commands(variant: str, size: str, t: dict) -> str:
    """The commands that trained these weights, in Markdown: one per run, each after the first from the last's
    export."""
    runs = training_runs(t)
    kinds = list(dict.fromkeys(_teacher(r["teacher"]) for r in runs if r.get("teacher")))  # one name for each
    names = {kind: "TEACHER" if len(kinds) == 1 else f"TEACHER{i}" for i, kind in enumerate(kinds, 1)}
    commands = []
    for i, run in enumerate(runs, 1):
        out = "RUN" if len(runs) == 1 else f"RUN{i} --export EXPORT{i}" if i < len(runs) else f"RUN{i}"
        init = f" --init EXPORT{i - 1}" if i > 1 else ""
        if teacher := run.get("teacher"):
            init += f" --teacher {names[_teacher(teacher)]} --distill {teacher['distill']:g}"
        if noise := run.get("text_noise"):
            init += f" --text-noise {noise:g}"
        # a timed cosine ended where the run stopped: those steps reproduce it
        steps = run["step"] if run.get("time_schedule") else run["steps_planned"]
        commands.append(f"`python -m maskmamba.train generator --variant {variant} --size {size} --steps "
                        f"{steps} --batch {run['batch']} --data DATA --out {out}{init}`")
    legend = "; ".join(f"{name}: {kind}" for kind, name in names.items())
    return ", then ".join(commands) + (f" ({legend})" if legend else "")


def _temperature(scored: dict) -> str:
    """The token temperature the figures were drawn at, where the evaluation recorded it (older ones did not)."""
    return f", token temperature {num(scored['temperature'])}" if "temperature" in scored else ""


def metric_line(shipped: dict, scored: dict, real_acc: float, default_cfg: float, results: Path) -> str:
    best = num(shipped["best_cfg"])
    one_scale = len(scored.get("cfg_sweep") or []) == 1  # a sweep of one scale chose nothing
    scale = f"CFG scale {best}, the one scale its sweep scored" if one_scale else f"the best CFG scale {best}"
    if default_cfg != shipped["best_cfg"]:
        default = f"while the sweep's best is {best}"
    else:
        default = "the scale scored" if one_scale else "the best of its sweep"
    return (
        f"- Metrics (`{scored['command']}`, {scored['steps']} iterations{_temperature(scored)}, this {shipped['storage']} file; "
        f"see `{results}`): FID {shipped['fid']:.1f} at {scale} ({scored['n_images']:,} "
        f"class-conditioned images against the training set); class accuracy {pct(shipped['class_acc'])} by the "
        f"project's judge classifier (which scores {pct(real_acc)} on real held-out images); prompt top-5 "
        f"{pct(shipped['prompt_top5'])} on {scored['n_prompts']:,} tag captions; paraphrase top-5 "
        f"{pct(shipped['paraphrase_top5'])}{_paraphrase_error(scored)} on {scored['n_paraphrase_images']:,} images of "
        f"prompts no caption holds. The demo's default CFG scale is {num(default_cfg)}, {default}."
    )


def _paraphrase_error(scored: dict) -> str:
    """The paraphrase figure's standard error over prompts, where the evaluation recorded it (older ones did not)."""
    se = scored.get("paraphrase_top5_se")
    return f" (standard error {100 * se:.1f} points over prompts)" if se is not None else ""


def storage_compare_line(shipped: dict, scored: dict) -> list[str]:
    rows = scored.get("storage_compare") or {}
    parts = [f"{fmt}: FID {r['fid']:.1f} ({r['fid_change']:+.1f}), class accuracy {pct(r['class_acc'])} "
             f"({100 * r['class_acc_change']:+.1f} points)" for fmt, r in rows.items()]
    if not parts:
        return []
    return [f"- The same model in other storage formats, same seeds and CFG (change against "
            f"{shipped['storage']}): " + "; ".join(parts) + "."]


def data_line(s: Sources, config: GeneratorConfig) -> str:
    d = s.dataset
    styles = ", ".join(f"{name} {count:,}" for name, count in d["styles"].items())
    splits = ", ".join(f"{count:,} {name}" for name, count in d["splits"].items())
    levels = "x".join(map(str, s.tokenizer_levels))
    built = f"; built by `{d['build_command']}`" if "build_command" in d else ""
    return (f"- Data: {d['n_images']:,} emoji images ({splits}) in {len(d['styles'])} styles ({styles}){built}; "
            f"tokenised by `{s.tokenizer_path}` ({config.grid}x{config.grid} FSQ tokens, levels {levels}, "
            f"{s.tokenizer_codes:,} codes).")


def licence_lines(s: Sources) -> list[str]:
    sources = s.dataset["sources"]
    share_alike = [src for src in sources if src["licence"] == SHARE_ALIKE]
    if not share_alike:
        raise CardError(f"no {SHARE_ALIKE} source in the data set: the cards' CC BY-SA 4.0 licence needs one")
    why = ", ".join(f"{src['style']} ({src['package']} {src['version']})" for src in share_alike)
    credits = [f"{src['credit']} ({src['style']}: {src['package']} {src['version']}, {src['licence']})"
               for src in sources]
    credits += [s.dataset["catalogue"]["credit"] if "catalogue" in s.dataset else CLDR_CREDIT, ENCODER_CREDIT]
    return [
        f"- Licence: CC BY-SA 4.0, because the training images include {why}, licensed {SHARE_ALIKE}.",
        "- Credits:",
        *(f"  - {credit}" for credit in credits),
    ]


def card(variant: str, folder: Path, s: Sources, note: str | None = None) -> str:
    """The model card of the checkpoint in `folder` (the variant `variant` of the results)."""
    shipped = need(s.results["shipped"][variant], SHIPPED_KEYS, f"{s.results_path}: shipped[{variant}]")
    if variant not in s.results["variants"]:
        raise CardError(f"{s.results_path}: variants lacks {variant}, whose n and command the card cites")
    scored = need(s.results["variants"][variant], VARIANT_KEYS, f"{s.results_path}: variants[{variant}]")
    if (scored["fid"], scored["best_cfg"]) != (shipped["fid"], shipped["best_cfg"]):
        raise CardError(f"{s.results_path}: variants[{variant}] (FID {scored['fid']}) is not the evaluation of "
                        f"shipped[{variant}] (FID {shipped['fid']}): evaluate the shipped file again")
    if not (folder / "config.json").is_file():
        raise CardError(f"no checkpoint of {variant} in {folder}: config.json is missing")
    raw = read_config(folder)
    config = GeneratorConfig.from_dict(raw)
    if config.variant != variant:
        raise CardError(f"{folder / 'config.json'} holds {config.variant!r}, not {variant!r}")
    try:
        check_tokenizer(config, FSQ(tuple(s.tokenizer_levels)))
    except ValueError as err:
        raise CardError(f"{folder}: {err} ({s.tokenizer_path}): pass the tokenizer it was trained with (--tokenizer)") from None
    if s.dataset.get("n_classes", config.num_classes) != config.num_classes:
        raise CardError(f"{folder} has {config.num_classes} classes but the data set has {s.dataset['n_classes']}: "
                        f"pass the summary of the data it was trained on (--dataset)")
    formats = stored_formats(folder)
    if not formats or formats[0] != shipped["storage"]:
        raise CardError(f"{folder} holds {', '.join(formats) or 'no weights'} and the demo loads the first, but "
                        f"the results score {shipped['storage']}: ship exactly the evaluated file")
    training = need(read_json(folder / "training.json"), TRAINING_KEYS, str(folder / "training.json"))
    params = count_params(generator_class(variant)(config)) / 1e6
    default_cfg = SamplingSettings.for_checkpoint(raw).cfg_scale
    command = training_commands(variant, config.size, training)
    recipe = (f", dropout {config.dropout:g}" if config.dropout else "") + (
        ", prompts pooled into their first slot: `--prompt-pool`" if config.prompt_pool else "")
    curves = s.results_path.parent / f"{variant}_curves.png"
    pictures = s.results_path.parent / f"{variant}_paraphrases.png"
    matched = s.results_path.parent / f"{variant}_paraphrases_matched.png"
    lines = [
        f"# {variant} ({config.size})",
        "",
        f"`{variant}`: {VARIANTS[variant].description}. Size `{config.size}` (width {config.width}, depth "
        f"{config.depth}, {config.heads} heads, {params:.2f}M parameters), one model for class AND prompt "
        f"conditioning ({config.num_classes} CLDR-subgroup classes; prompts through all-MiniLM-L6-v2). "
        + storage_line(shipped["storage"], folder),
        "",
        *training_lines(training, s.dataset["splits"]["train"], curves),
    ]
    if pictures.is_file():
        lines.append(f"Every paraphrase prompt drawn at seed 0 and the default CFG: `{pictures}`.")
    if matched.is_file():
        lines.append(f"The same prompts as the demo draws them, from their matched captions: `{matched}`.")
    if note:
        lines.append(f"What still looks wrong: {note.strip().rstrip('.')}.")
    lines += [
        "",
        data_line(s, config),
        f"- Training: {command} (DATA: the data set's token cache; `--batch` counts every device together, so "
        f"under torchrun divide it by the number of GPUs; the recipe of `maskmamba.train.generator`{recipe}).",
        metric_line(shipped, scored, s.results["classifier_real_acc"], default_cfg, s.results_path),
        *storage_compare_line(shipped, scored),
        *licence_lines(s),
    ]
    return FRONT_MATTER + "\n".join(lines) + "\n"


def read_notes(path: Path | None, variants: list[str]) -> dict[str, str]:
    if path is None:
        return {}
    notes = read_json(path)
    unknown = sorted(set(notes) - set(variants))
    if unknown:
        raise CardError(f"{path} has notes for {', '.join(unknown)}, which get no card here: {', '.join(variants)}")
    bad = sorted(k for k, v in notes.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise CardError(f"{path}: the notes of {', '.join(bad)} must be non-empty text")
    return notes


def write_cards(assets: Path, s: Sources, variants: list[str] | None = None, notes: dict[str, str] | None = None
                ) -> list[Path]:
    """Write assets/<variant>/README.md for each of `variants` (default: every shipped one); the paths written."""
    shipped = list(s.results["shipped"])
    chosen = shipped if variants is None else variants
    missing = [v for v in chosen if v not in shipped]
    if missing:
        raise CardError(f"{', '.join(missing)} not in the `shipped` section of {s.results_path} (it holds: "
                        f"{', '.join(shipped) or 'none'}): evaluate with --shipped first")
    texts = {v: card(v, assets / v, s, (notes or {}).get(v)) for v in chosen}  # every card checked before any write
    paths = []
    for variant, text in texts.items():
        path = assets / variant / "README.md"
        path.write_text(text)
        paths.append(path)
    return paths


def main(argv: list[str]) -> list[Path]:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval cards", description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=Path, default=Path("assets"), help="folder of the <variant>/ checkpoints")
    p.add_argument("--results", type=Path, default=Path("assets/results/generators.json"))
    p.add_argument("--dataset", type=Path, default=Path("assets/results/dataset.json"))
    p.add_argument("--tokenizer", type=Path, default=Path("assets/tokenizer"), help="the shipped tokenizer's folder")
    p.add_argument("--variants", default=None, help="comma-separated (default: every variant in `shipped`)")
    p.add_argument("--notes", type=Path, default=None, help='JSON {variant: "what still looks wrong"}')
    args = p.parse_args(argv)
    try:
        sources = Sources.read(args.results, args.dataset, args.tokenizer)
        variants = None if args.variants is None else [v for v in args.variants.split(",") if v]
        notes = read_notes(args.notes, variants or list(sources.results["shipped"]))
        paths = write_cards(args.assets, sources, variants, notes)
    except CardError as err:
        raise SystemExit(f"cards: {err}") from None
    for path in paths:
        print(f"wrote {path}")
    return paths
