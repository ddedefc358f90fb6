"""Train a generator (any registry variant) for class AND prompt conditioning, resumably, on 1..N devices.

python -m maskmamba.train generator --variant NAME --data DIR --out RUNDIR [--size small] [--steps 6000]
    [--batch 256] [--minutes 9] [--export DIR] [--storage int8,int4]
torchrun --nproc-per-node 2 -m maskmamba.train generator ...      (DistributedDataParallel; batch is per device)

DIR needs tokens.safetensors (`python -m maskmamba.data tokenize DIR [--augment K]`), captions.safetensors and
manifest.json: pixels never travel. MaskGIT objective: a cosine-distributed mask ratio, cross-entropy on the
masked tokens; each sample is conditioned on its class or (with --prompt-frac) on one of its captions, and
dropped to the null condition with --cond-dropout for classifier-free guidance. bf16 autocast on CUDA.

The recipe: AdamW with weight decay on matrices only (maskmamba.train.optim), linear warm-up then cosine decay
of the lr to --min-lr-ratio, label smoothing, optional dropout, an EMA whose decay warms up, and each sample
drawn among its image's tokenizations (the original and its augmented copies); optionally a teacher, another
saved generator, whose predictions are a --distill share of the targets; optionally Gaussian noise on the
prompt states (--text-noise), so that a prompt near a trained caption, not on it, is met in training. With
--time-schedule the decay also keeps pace with this invocation's --minutes, so that a run its deadline stops before
--steps still ends at the floor (a lease's legs, whose steps a probe can only estimate). Every
--eval-every steps the EMA's held-out masked-token loss is logged, and the EMA weights at the best such loss are
kept (best.pt) and exported; curves.json and curves.png in the run folder show train and held-out loss against
images seen.
With --export, every checkpoint (--save-every minutes) also exports the best EMA so far in one format, so that a
lease which loses its machine keeps what it had collected (scripts/gpu_collect.sh brings the int8 back).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from maskmamba.configs import COND_POSITIONS
from maskmamba.data.dataset import CaptionBank, load_manifest
from maskmamba.data.tokens import load_token_copies, load_tokens, token_codebook_size
from maskmamba.graphs import GraphedStep
from maskmamba.models import Condition, Generator, build_model, load_generator, save_weights
from maskmamba.models.quantize import FILES, check_storage, stored_files, stored_formats
from maskmamba.ops import triton_scan
from maskmamba.schedule import mask_ratio
from maskmamba.train.checkpoint import Deadline, load_checkpoint, save_checkpoint
from maskmamba.train.curves import write_curves
from maskmamba.train.optim import configure_optimizers, cosine_lr, cosine_progress, set_lr

CKPT, BEST, LOG = "ckpt.pt", "best.pt", "log.jsonl"
VAL_MASK_SEED = 1234  # the held-out loss's masks
BUDGET_SYNC_EVERY = 10  # steps between DDP ranks' agreements on the clock (a host sync each)


@dataclass
class Data:
    """A split's tokenizations (N, copies, grid*grid), the original first; classes; emoji rows; caption bank;
    all on the training device."""

    copies: torch.Tensor
    classes: torch.Tensor
    emoji: torch.Tensor
    captions: CaptionBank

    @classmethod
    def load(cls, root: str | Path, split: str, device: torch.device) -> Data:
        _, classes, emoji = load_tokens(root, split, device)
        return cls(load_token_copies(root, split, device), classes, emoji, CaptionBank(root, device))

    @property
    def ids(self) -> torch.Tensor:
        """The originals' token ids (N, grid*grid)."""
        return self.copies[:, 0]

    def sample(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Token ids of `rows`, each from a uniformly drawn tokenization of its image."""
        pick = torch.randint(self.copies.shape[1], rows.shape, generator=generator, device=rows.device)
        return self.copies[rows, pick]


def mask_batch(ids: torch.Tensor, mask_id: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a cosine-distributed fraction of each row (at least one token); returns (inputs, mask)."""
    b, n = ids.shape
    ratio = mask_ratio(torch.rand(b, generator=generator, device=ids.device))
    count = (ratio * n).ceil().clamp(min=1)
    rank = torch.rand(b, n, generator=generator, device=ids.device).argsort(1).argsort(1)
    mask = rank < count[:, None]
    return torch.where(mask, mask_id, ids), mask


def condition_batch(data: Data, rows: torch.Tensor, prompt_frac: float, dropout: float, generator: torch.Generator,
                    text_noise: float = 0.0) -> Condition:
    """Class or random-caption condition per sample (captions noised by `text_noise`), some dropped to null."""
    b, device = len(rows), rows.device
    use_prompt = torch.rand(b, generator=generator, device=device) < prompt_frac
    states, text_mask = data.captions.states(data.captions.random_caption(data.emoji[rows], generator))
    if text_noise:
        states = noised(states, text_mask, text_noise, generator)
    cond = Condition(torch.where(use_prompt, -1, data.classes[rows]), states * use_prompt[:, None, None], text_mask & use_prompt[:, None])
    return cond.dropped(torch.rand(b, generator=generator, device=device) < dropout)


def noised(states: torch.Tensor, mask: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Prompt states plus Gaussian noise of `scale` times each state's RMS, in the slots `mask` holds only."""
    rms = states.pow(2).mean(-1, keepdim=True).sqrt()
    noise = torch.randn(states.shape, generator=generator, device=states.device, dtype=states.dtype)
    return states + scale * rms * noise * mask[..., None]


def masked_loss(model: torch.nn.Module, ids: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor, cond: Condition,
                smoothing: float, teacher: torch.nn.Module | None = None, distill: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the masked positions, as a mask-weighted mean: static shapes, no host sync. With a
    `teacher`, a `distill` share of it is the cross-entropy against the teacher's predictions for the same inputs
    and condition (soft targets: the student learns which other tokens are likely too)."""
    logits = model(inputs, cond).flatten(0, 1).float()  # classes innermost: the fast softmax layout
    ce = F.cross_entropy(logits, ids.flatten(), label_smoothing=smoothing, reduction="none")
    if teacher is not None:
        with torch.no_grad():
            soft = teacher(inputs, cond).flatten(0, 1).float().softmax(-1)
        ce = (1 - distill) * ce + distill * F.cross_entropy(logits, soft, reduction="none")
    return (ce.view_as(ids) * mask).sum() / mask.sum()


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data: Data, mask_id: int, device: torch.device, batch: int = 256,
                    seed: int = VAL_MASK_SEED) -> float:
    """Masked-token cross-entropy on the val split, fixed masks (drawn from `seed` on `device`: another device's
    random stream draws other masks) and class conditions (no smoothing)."""
    generator = torch.Generator(device).manual_seed(seed)
    total, count = 0.0, 0
    for start in range(0, len(data.ids), batch):
        rows = torch.arange(start, min(start + batch, len(data.ids)), device=device)
        inputs, mask = mask_batch(data.ids[rows], mask_id, generator)
        with _autocast(device):
            loss = masked_loss(model, data.ids[rows], inputs, mask, Condition.classes(data.classes[rows]), 0.0)
        total += loss.item() * len(rows)
        count += len(rows)
    return total / count


def _autocast(device: torch.device):
    """bf16 on CUDA (without the weight-cast cache, which CUDA-graph capture forbids); off on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return torch.autocast("cpu", enabled=False)


def make_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, smoothing: float, device: torch.device,
                    teacher: torch.nn.Module | None = None, distill: float = 0.0):
    """One optimizer step on a batch given as plain tensors (so that a CUDA graph can hold it); returns the loss."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step(ids, inputs, mask, class_ids, text, text_mask) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = masked_loss(model, ids, inputs, mask, Condition(class_ids, text, text_mask), smoothing, teacher,
                               distill)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return loss.detach()

    return step


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.train generator", description=__doc__.splitlines()[0])
    p.add_argument("--variant", required=True)
    p.add_argument("--size", default="small")
    p.add_argument("--cond-position", default=None, choices=COND_POSITIONS, help="in-context variants only (default middle)")
    p.add_argument("--data", required=True, help="data set folder with tokens.safetensors and captions.safetensors")
    p.add_argument("--out", required=True, help="run folder: ckpt.pt and log.jsonl")
    p.add_argument("--steps", type=int, default=6000, help="total optimizer steps of the whole run")
    p.add_argument("--batch", type=int, default=256, help="per device")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine floor as a fraction of --lr")
    p.add_argument("--weight-decay", type=float, default=0.05, help="on matrices only (see maskmamba.train.optim)")
    p.add_argument("--dropout", type=float, default=0.0, help="residual and embedding dropout (a config field)")
    p.add_argument("--prompt-pool", action="store_true",
                   help="a prompt's first condition slot holds the mean of its MiniLM states instead of [CLS]'s "
                        "(a config field; --init may switch it on)")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--prompt-frac", type=float, default=0.5, help="share of samples conditioned on a caption")
    p.add_argument("--cond-dropout", type=float, default=0.1)
    p.add_argument("--text-noise", type=_in_range("a noise scale", 0), default=0.0,
                   help="Gaussian noise added to each caption state in training, in units of that state's RMS (0: none)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=500, help="steps between held-out losses (best EMA kept)")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="steps between EMA snapshots in RUNDIR/snapshots/STEP/VARIANT (for evaluation along training; 0: none)")
    p.add_argument("--minutes", type=float, default=9.0, help="wall-clock budget of this invocation")
    p.add_argument("--time-schedule", action="store_true",
                   help="the cosine also follows --minutes: where the deadline comes before --steps, the lr reaches "
                        "its floor at the deadline (the schedule then depends on the machine's speed; recorded)")
    p.add_argument("--save-every", type=float, default=3.0, help="minutes between checkpoints")
    p.add_argument("--log-every", type=int, default=100, help="steps between log lines (and step 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eager", action="store_true", help="no CUDA graph for the training step (always eager under DDP)")
    p.add_argument("--scan-config", type=triton_scan.config_from_text, default=triton_scan.CONFIG,
                   help="the fused scan's tiles: ScanConfig fields changed from the default, e.g. walk=1,bwd_chunk=8")
    p.add_argument("--teacher", default=None,
                   help="a saved generator (any variant, size and storage; same vocabulary, classes, grid and text "
                        "condition) whose predictions the run also learns from (--distill)")
    p.add_argument("--distill", type=_in_range("a share of the loss", 0, 1), default=0.5,
                   help="with --teacher: the share of the loss that is cross-entropy against the teacher's predictions")
    p.add_argument("--init", default=None,
                   help="start a new run from this saved generator's weights (any storage; same config, dropout aside)")
    p.add_argument("--export", default=None,
                   help="write the best EMA weights + classes.json here when done, and at each checkpoint in one "
                        "format (int8 where --storage has it; training.json then says done: false)")
    p.add_argument("--storage", type=_storages, default=["fp32"],
                   help=f"comma-separated weight formats to export side by side ({', '.join(FILES)})")
    return p


def _in_range(what: str, low: float, high: float = math.inf):
    """An argparse type: a float in [low, high], else an error naming `what`."""
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            bound = f"between {low:g} and {high:g}" if high < math.inf else f"{low:g} or more"
            raise argparse.ArgumentTypeError(f"{what} is {bound}, not {text}")
        return value
    return parse


def _storages(text: str) -> list[str]:
    try:
        return [check_storage(s) for s in dict.fromkeys(text.split(",")) if s]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _setup_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def main(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    triton_scan.CONFIG = args.scan_config
    rank, world, device = _setup_distributed(args.device)
    out = Path(args.out)
    classes = load_manifest(args.data)["classes"]
    torch.manual_seed(args.seed)  # same initial weights on every rank
    position = {} if args.cond_position is None else {"cond_position": args.cond_position}
    model = build_model(args.variant, args.size, num_classes=len(classes), dropout=args.dropout,
                        prompt_pool=args.prompt_pool, codebook_size=token_codebook_size(args.data), **position).to(device)
    init = warm_start(model, args.init) if args.init and not (out / CKPT).is_file() else None
    teacher = load_teacher(args.teacher, model, device) if args.teacher else None
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    graphed = device.type == "cuda" and world == 1 and not args.eager
    optimizer = configure_optimizers(model, args.lr, args.weight_decay, graphed)
    step, best = 0, {"val_loss": math.inf, "step": 0}
    if (state := load_checkpoint(out / CKPT, device)) is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        for group in state["optimizer"]["param_groups"]:  # an eager run's checkpoint may resume graphed, and back
            group["capturable"] = graphed  # loading then puts AdamW's step counters where this run needs them
            group["lr"] = torch.tensor(float(group["lr"]), device=device) if graphed else float(group["lr"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    if (kept := load_checkpoint(out / BEST, "cpu")) is not None:  # best.pt is the one record of the best point
        best = {"val_loss": kept["val_loss"], "step": kept["step"]}
    trained = DistributedDataParallel(model) if world > 1 else model
    train_step = make_train_step(trained, optimizer, args.label_smoothing, device, teacher, args.distill)
    if graphed:
        train_step = GraphedStep(train_step)
    train, val = Data.load(args.data, "train", device), Data.load(args.data, "val", device)
    deadline = Deadline(args.minutes, args.save_every)
    log = _Logger(out / LOG if rank == 0 else None)
    if init is not None:
        log.write(event="init", **init)
    if teacher is not None:
        log.write(event="teacher", **teacher_record(args, teacher))
    log.write(event="start", step=step, world=world, variant=args.variant, params=sum(p.numel() for p in model.parameters()),
              cuda_graph=graphed, batch=args.batch * world, copies=train.copies.shape[1],
              text_noise=args.text_noise, time_schedule=args.time_schedule,
              scan_config=dataclasses.asdict(args.scan_config))
    bar = tqdm(total=args.steps, initial=step, desc=args.variant, disable=rank != 0, mininterval=5)
    start_time, start_step, last_val = time.perf_counter(), step, None
    resumed_at = cosine_progress(step, args.warmup, args.steps)  # the time clock runs on from here to 1
    while step < args.steps:
        if world == 1 or (step - start_step) % BUDGET_SYNC_EVERY == 0:
            spent, over = _budget(deadline, world, device)
        if over:
            break
        clock = resumed_at + (1 - resumed_at) * spent if args.time_schedule else 0.0
        generator = torch.Generator(device).manual_seed(args.seed * 1_000_003 + step * 1009 + rank)
        rows = torch.randint(len(train.classes), (args.batch,), generator=generator, device=device)
        ids = train.sample(rows, generator)
        inputs, mask = mask_batch(ids, model.mask_id, generator)
        cond = condition_batch(train, rows, args.prompt_frac, args.cond_dropout, generator, args.text_noise)
        lr = cosine_lr(step, args.lr, args.warmup, args.steps, args.min_lr_ratio, clock)
        set_lr(optimizer, lr)
        loss = train_step(ids, inputs, mask, cond.class_ids, cond.text, cond.text_mask)
        update_ema(ema, model, step, args.ema)
        step += 1
        bar.update(1)
        if step % args.log_every == 0 or step == 1:
            value = loss.item()
            rate = (step - start_step) * args.batch * world / (time.perf_counter() - start_time)
            bar.set_postfix(loss=f"{value:.3f}", img_s=f"{rate:.0f}")
            log.write(event="train", step=step, loss=round(value, 4), images_per_s=round(rate, 1),
                      lr=round(lr, 7),
                      time=round(time.time(), 2))  # wall clock: side-by-side probes are timed where they overlap
        if rank == 0 and step % args.eval_every == 0:
            last_val = _held_out(ema, val, model.mask_id, device, step, best, out, log)
        if rank == 0 and args.snapshot_every and step % args.snapshot_every == 0:
            snapshot(ema, classes, out, step, args.variant)
        if rank == 0 and deadline.save_due():
            _save(out, model, ema, optimizer, step)
            if args.export:  # the best EMA so far, where a lease collects its results, should the machine be lost
                progress = {"event": "progress", "step": step, "done": False,
                            "minutes": round(deadline.elapsed() / 60, 2),
                            "best_val_loss": round(best["val_loss"], 4) if best["step"] else None,
                            "best_step": best["step"] or None}
                path = _export_best(out, ema, classes, args, world, progress, [_progress_storage(args.storage)])
                log.write(event="progress_export", step=step, exported=path)
    bar.close()
    result = {"event": "stop", "step": step, "done": step >= args.steps, "minutes": round(deadline.elapsed() / 60, 2)}
    if rank == 0:
        if last_val is None or last_val["step"] != step:  # the weights this run stops with are judged too
            last_val = _held_out(ema, val, model.mask_id, device, step, best, out, log)
        _save(out, model, ema, optimizer, step)
        result |= {"val_loss_ema": round(last_val["val_loss"], 4), "best_val_loss": round(best["val_loss"], 4),
                   "best_step": best["step"]}
        if args.export:  # also when stopped early: training.json records how far it got
            result["exported"] = _export_best(out, ema, classes, args, world, result, args.storage)
        log.write(**result)
        write_curves(out / LOG, out, f"{args.variant} ({args.size})")
        print("TRAINING COMPLETE" if result["done"] else "NOT DONE: run the same command again to resume")
    if world > 1:
        dist.destroy_process_group()
    return result


def _budget(deadline: Deadline, world: int, device: torch.device) -> tuple[float, bool]:
    """The share of this invocation's budget spent and whether it is over, as rank 0 sees them: under DDP every
    rank must stop at the same step and set the same lr."""
    spent, over = deadline.share(), deadline.expired()
    if world > 1:
        values = torch.tensor([spent, float(over)], device=device)
        dist.broadcast(values, 0)
        spent, over = values[0].item(), bool(values[1].item())
    return spent, over


def _export_best(out: Path, ema: torch.nn.Module, classes: list[str], args: argparse.Namespace, world: int,
                 record: dict, storages: list[str]) -> str:
    """The best EMA so far exported to --export in `storages`, its training.json `record` plus the batch, the
    planned steps, the step exported, the caption noise where there was some, the time schedule where it was on,
    where the run started from and the teacher it learnt from."""
    exported = best_ema(out, ema)
    info = record | {"batch": args.batch * world, "steps_planned": args.steps, "exported_step": exported["step"]}
    if args.text_noise:
        info["text_noise"] = args.text_noise
    if args.time_schedule:
        info["time_schedule"] = True
    return export(exported["model"], classes, Path(args.export), storages, info | _run_record(out))


def _progress_storage(storages: list[str]) -> str:
    """The one format of the exports made during training: int8 where it is asked for (what a lease brings back)."""
    return "int8" if "int8" in storages else storages[0]


def _held_out(ema, val: Data, mask_id: int, device, step: int, best: dict, out: Path, log) -> dict:
    """Log the EMA's held-out loss and return it with its step; when it is the best so far, update `best` in
    place and keep the EMA weights in best.pt."""
    current = {"val_loss": validation_loss(ema, val, mask_id, device), "step": step}
    log.write(event="val", step=step, val_loss=round(current["val_loss"], 4))
    if current["val_loss"] < best["val_loss"]:
        best.update(current)
        save_checkpoint(out / BEST, {"ema": ema.state_dict(), **best})
    return current


def config_differences(model: Generator, source: Generator, keys) -> str:
    """'key (source's value, not model's), ...' for each of `keys` where the two configs differ; '' when none."""
    mine, theirs = model.config.to_dict(), source.config.to_dict()
    return ", ".join(f"{k} ({theirs[k]!r}, not {mine[k]!r})" for k in keys if mine[k] != theirs[k])


WARM_START_FREE = {"dropout", "prompt_pool"}  # config fields a warm start may change: no weight depends on them


def warm_start(model: Generator, folder: str | Path) -> dict:
    """Load the weights of the generator saved in `folder` (any storage, dequantized) into `model`, whose config
    must match it but for WARM_START_FREE; returns what the run log records of it (the source and its training.json)."""
    source = load_generator(folder)
    if differ := config_differences(model, source, sorted(set(model.config.to_dict()) - WARM_START_FREE)):
        raise SystemExit(f"--init {folder}: its config differs in {differ}")
    model.load_state_dict(source.state_dict())
    training = Path(folder) / "training.json"
    return {"from": str(folder), "training": json.loads(training.read_text()) if training.is_file() else None}


TEACHER_FIELDS = ("codebook_size", "num_classes", "grid", "text_dim", "cond_slots")  # what the targets depend on


def load_teacher(folder: str | Path, student: Generator, device: torch.device) -> Generator:
    """The generator saved in `folder`, frozen in eval mode on `device`, checked to predict the student's tokens
    from the student's conditions."""
    teacher = load_generator(folder)
    if differ := config_differences(student, teacher, TEACHER_FIELDS):
        raise SystemExit(f"--teacher {folder}: it predicts from other inputs: {differ}")
    return teacher.to(device).eval().requires_grad_(False)


def teacher_record(args: argparse.Namespace, teacher: Generator) -> dict:
    """What training.json records of the teacher: its folder, variant and size, and the loss share it had."""
    return {"from": str(args.teacher), "variant": teacher.variant, "size": teacher.config.size, "distill": args.distill}


def _run_record(out: Path) -> dict:
    """{'init': ..., 'teacher': ...} from the run log's first such events: the weights the run started from and
    the generator it learnt from, each where there was one."""
    log = out / LOG
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    found = {}
    for event in events:
        if event.get("event") in ("init", "teacher"):
            found.setdefault(event["event"], {k: v for k, v in event.items() if k != "event"})
    return found


def snapshot(ema: torch.nn.Module, classes: list[str], out: Path, step: int, variant: str) -> Path:
    """The EMA weights at `step` as an evaluable checkpoint folder, out/snapshots/<step, 6 digits>/<variant>."""
    folder = out / "snapshots" / f"{step:06d}" / variant
    save_weights(ema, folder)
    (folder / "classes.json").write_text(json.dumps(classes))
    return folder


def best_ema(out: Path, ema: torch.nn.Module) -> dict:
    """{'model': the EMA at the best held-out loss (the current EMA when none was recorded), 'step': its step}."""
    state = load_checkpoint(out / BEST, next(ema.parameters()).device)
    if state is None:
        return {"model": ema, "step": None}
    best = copy.deepcopy(ema)
    best.load_state_dict(state["ema"])
    return {"model": best, "step": state["step"]}


def export(model: torch.nn.Module, classes: list[str], folder: Path, storages: list[str], info: dict) -> str:
    """Write `model` in each storage format into `folder` (one weights file each, so the evaluation can score them
    side by side; copy one of them to ship), with classes.json and training.json. Weights of other formats that an
    earlier export left there are removed, so the folder holds one model, the one training.json describes."""
    for stale in set(stored_formats(folder)) - set(storages):
        for path in stored_files(folder, stale):
            path.unlink()
    for storage in storages:
        save_weights(model, folder, storage)
    (folder / "classes.json").write_text(json.dumps(classes))
    (folder / "training.json").write_text(json.dumps(info | {"storage": storages}))
    return str(folder)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """EMA whose decay grows as (1 + step) / (10 + step) up to `decay`, so a short run is not dragged back to its
    init; one fused lerp over all parameters, no host synchronisation."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)


def _save(out: Path, model, ema, optimizer, step: int) -> None:
    save_checkpoint(out / CKPT, {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(), "step": step})


class _Logger:
    """JSON lines to a file (rank 0 only) and to stdout."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record) -> None:
        if self.path is None:
            return
        line = json.dumps(record)
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")
