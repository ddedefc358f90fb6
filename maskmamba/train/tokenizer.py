"""Train the VQ tokenizer, resumably, in wall-clock chunks.

python -m maskmamba.train tokenizer --data DIR --out RUNDIR [--minutes 9] [--steps 30000] [--batch 64]
    [--levels 8 5 5 5] [--augment] [--gan-weight 0.1 --gan-start STEP] [--compile] [--export assets/tokenizer]

The whole train split sits on the device as uint8; batches are sampled with replacement and flipped
left-right at random; `--augment` also shifts each image by up to `--max-shift` whole pixels, filling
with white. `--levels` sets the FSQ levels per latent channel (the codebook size is their product). Loss: L1, plus an optional hinge patch-GAN term from `--gan-start` on, scaled
by `--gan-weight` times VQGAN's adaptive gradient-norm ratio, and optionally `--fm-weight` times the L1
distance between the discriminator's activations on originals and reconstructions. An EMA of the weights is kept and is what
`--export` writes (fp16 safetensors + config.json). A new run with the same RUNDIR resumes from
RUNDIR/ckpt.pt; the model shape always comes from the checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from maskmamba.eval.tokenizer import codebook_usage, load_split, psnr_db, reconstruct
from maskmamba.models.tokenizer import VQTokenizer, uint8_to_input
from maskmamba.train.checkpoint import Deadline, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from maskmamba.train.optim import cosine_lr

CKPT = "ckpt.pt"
LOG = "log.jsonl"


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: three stride-2 convs, then one logit per 8x8-pixel-strided patch."""

    def __init__(self, width: int = 64):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.GroupNorm(32, 2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.GroupNorm(32, 4 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 3, 1, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each LeakyReLU (what feature matching compares); the last conv of the
        net maps the last of them to the logits."""
        feats, x = [], images
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return feats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.train tokenizer", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set folder (train-*/val-* shards)")
    p.add_argument("--out", required=True, help="run folder: ckpt.pt and log.jsonl live here")
    p.add_argument("--minutes", type=float, default=9.0, help="wall-clock budget of this invocation")
    p.add_argument("--steps", type=int, default=30_000, help="total optimizer steps of the whole run")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--min-lr-ratio", type=float, default=0.05, help="cosine floor as a fraction of --lr")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the exported weights")
    p.add_argument("--gan-weight", type=float, default=0.0,
                   help="patch-GAN loss weight (times the adaptive ratio); 0 = off")
    p.add_argument("--gan-start", type=int, default=0, help="step from which the GAN term is on")
    p.add_argument("--fm-weight", type=float, default=0.0,
                   help="discriminator feature-matching L1 weight while the GAN is on (a learned perceptual loss)")
    p.add_argument("--disc-lr", type=float, default=2e-4)
    p.add_argument("--enc-channels", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--dec-channels", type=int, nargs="+", default=[24, 48, 96, 144])
    p.add_argument("--enc-blocks", type=int, default=1)
    p.add_argument("--dec-blocks", type=int, default=2)
    p.add_argument("--levels", type=int, nargs="+", default=[8, 5, 5, 5],
                   help="FSQ levels per latent channel; the codebook size is their product (8 5 5 5 = 1000)")
    p.add_argument("--augment", action="store_true", help="also shift training images by up to --max-shift pixels")
    p.add_argument("--max-shift", type=int, default=4, help="largest shift of --augment, in pixels")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=float, default=3.0, help="minutes between checkpoints")
    p.add_argument("--val-images", type=int, default=512, help="val images scored at each checkpoint")
    p.add_argument("--export", default=None, help="write the EMA weights (fp16) here with save_pretrained")
    p.add_argument("--init", default=None, help="start a new run from these exported weights (save_pretrained folder)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train the decoder only: token ids stay exactly those of the --init weights")
    p.add_argument("--new-decoder", action="store_true",
                   help="with --init: keep its encoder, start a fresh decoder shaped by --dec-channels/--dec-blocks")
    return p


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then constant or cosine decay to `min_lr_ratio * lr` at `steps`."""
    if args.schedule == "constant" and step >= args.warmup:
        return args.lr
    return cosine_lr(step, args.lr, args.warmup, args.steps, args.min_lr_ratio)


def shift_on_white(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Move each image (B,3,H,W) in [-1, 1] by its own random whole-pixel offset in [-max_shift, max_shift]
    along each axis; the uncovered border is white (1.0)."""
    batch, _, height, width = x.shape
    pad = max_shift
    padded = F.pad(x, (pad, pad, pad, pad), value=1.0)
    dy, dx = (torch.randint(-pad, pad + 1, (2, batch, 1, 1), device=x.device))
    rows = (torch.arange(height, device=x.device).view(1, height, 1) + pad - dy).expand(batch, height, width)
    cols = (torch.arange(width, device=x.device).view(1, 1, width) + pad - dx).expand(batch, height, width)
    flat = (rows * (width + 2 * pad) + cols).view(batch, 1, -1).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def sample_batch(images: torch.Tensor, batch: int, max_shift: int = 0) -> torch.Tensor:
    """Random uint8 images (with replacement), randomly flipped left-right and, with max_shift > 0, shifted
    on white, as model input in [-1, 1]."""
    idx = torch.randint(len(images), (batch,), device=images.device)
    x = uint8_to_input(images[idx])
    flip = torch.rand(batch, 1, 1, 1, device=x.device) < 0.5
    x = torch.where(flip, x.flip(-1), x)
    return shift_on_white(x, max_shift) if max_shift > 0 else x


def feature_matching(disc: PatchDiscriminator, real: torch.Tensor, fake_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance between the discriminator's activations on real images and the given ones of their
    reconstructions (pix2pixHD)."""
    with torch.no_grad():
        targets = disc.features(real)
    return torch.stack([(f.float() - t.float()).abs().mean() for f, t in zip(fake_features, targets)]).mean()


def export_weights(model: VQTokenizer, folder: str | Path) -> Path:
    """Save fp16 weights + config.json with save_pretrained; returns the weights file."""
    copy.deepcopy(model).cpu().half().save_pretrained(folder)
    return Path(folder) / "model.safetensors"


def append_log(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


class Trainer:
    """Model, EMA, optimizers and the step counter; knows how to checkpoint and restore itself."""

    def __init__(self, args: argparse.Namespace, model_config: dict):
        self.args = args
        self.device = torch.device(args.device)
        self.model_config = model_config
        self.model = VQTokenizer(**model_config).to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        if args.init:
            init = VQTokenizer.from_pretrained(args.init).float()
            if args.new_decoder:
                self.model.encoder.load_state_dict(init.encoder.state_dict())
            else:
                self.model.load_state_dict(init.state_dict())
        if args.freeze_encoder:
            self.model.encoder.requires_grad_(False)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(args.ema))
        # every parameter, frozen ones included: AdamW skips those without gradients, and the groups always match
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
        self.disc = PatchDiscriminator().to(self.device) if args.gan_weight > 0 else None
        self.opt_d = (torch.optim.AdamW(self.disc.parameters(), lr=args.disc_lr, betas=(0.5, 0.9))
                      if self.disc is not None else None)
        self.net = torch.compile(self.model) if args.compile else self.model
        self.step = 0

    def state(self) -> dict:
        state = {
            "model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
            "step": self.step, "rng": rng_state(), "model_config": self.model_config,
            "freeze_encoder": self.args.freeze_encoder,
        }
        if self.disc is not None:
            state |= {"disc": self.disc.state_dict(), "opt_d": self.opt_d.state_dict()}
        return state

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        if self.disc is not None and "disc" in state:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.step = state["step"]
        set_rng_state(state["rng"])

    def gan_on(self) -> bool:
        return self.disc is not None and self.step >= self.args.gan_start

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step (and one discriminator step when the GAN is on); returns detached losses."""
        args = self.args
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, args)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            recon, ids = self.net(x)
            l1 = (recon.float() - x).abs().mean()
            loss = l1
            out = {"l1": l1.detach()}
            if self.gan_on():
                fake_features = self.disc.features(recon)  # one pass serves the GAN and the feature-matching terms
                g_loss = -self.disc.net[-1](fake_features[-1]).float().mean()
                weight = args.gan_weight * self.balance(l1, g_loss)
                loss = loss + weight * g_loss
                out |= {"g_loss": g_loss.detach(), "gan_w": weight}
                if args.fm_weight > 0:
                    fm = feature_matching(self.disc, x, fake_features)
                    loss = loss + args.fm_weight * fm
                    out["fm"] = fm.detach()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.clip)
        self.opt.step()
        self.ema.update_parameters(self.model)
        if self.gan_on():
            out["d_loss"] = self.disc_step(x, recon.detach())
        out["loss"] = loss.detach()
        out["ids"] = ids
        self.step += 1
        return out

    def balance(self, rec_loss: torch.Tensor, g_loss: torch.Tensor) -> torch.Tensor:
        """VQGAN's adaptive weight: the ratio of the two losses' gradient norms at the decoder's last layer."""
        last = self.model.decoder[-1].weight
        g_rec = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
        g_gan = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0, 1e4).detach()

    def disc_step(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Hinge loss update of the discriminator."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            d_loss = F.relu(1 - self.disc(real)).float().mean() + F.relu(1 + self.disc(fake)).float().mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return d_loss.detach()

    def validate(self, val: np.ndarray) -> dict:
        """PSNR and code usage of the raw and the EMA weights on the val images."""
        scores = {}
        for name, model in (("raw", self.model), ("ema", self.ema.module)):
            model.eval()
            recon, ids = reconstruct(model, val, self.device)
            model.train()
            scores[f"val_psnr_{name}"] = round(psnr_db(val, recon), 3)
            scores[f"val_usage_{name}"] = round(codebook_usage(ids, model.codebook_size), 4)
        return scores


def model_config_from_args(args: argparse.Namespace) -> dict:
    return {
        "enc_channels": list(args.enc_channels), "dec_channels": list(args.dec_channels),
        "enc_blocks": args.enc_blocks, "dec_blocks": args.dec_blocks, "levels": list(args.levels),
    }


def save(trainer: Trainer, out: Path, val: np.ndarray, elapsed: float) -> dict:
    """Checkpoint atomically, score the val images, and log the event."""
    save_checkpoint(out / CKPT, trainer.state())
    record = {"event": "checkpoint", "step": trainer.step, "elapsed_s": round(elapsed, 1)} | trainer.validate(val)
    append_log(out / LOG, record)
    tqdm.write(json.dumps(record))
    return record


def train(trainer: Trainer, images: torch.Tensor, val: np.ndarray, out: Path, deadline: Deadline) -> dict:
    """Run steps until `--steps` or the deadline; checkpoint periodically and at the end."""
    args = trainer.args
    bar = tqdm(total=args.steps, initial=trainer.step, desc="tokenizer", dynamic_ncols=True)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    steps, t0 = 0, time.perf_counter()
    while trainer.step < args.steps and not deadline.expired():
        out_step = trainer.train_step(sample_batch(images, args.batch, args.max_shift if args.augment else 0))
        ids = out_step.pop("ids")
        for key, value in out_step.items():
            sums[key] = sums.get(key, 0) + value
            counts[key] = counts.get(key, 0) + 1
        steps += 1
        bar.update(1)
        if trainer.step % args.log_every == 0 or trainer.step == args.steps:
            seconds = time.perf_counter() - t0
            record = {"step": trainer.step, "lr": lr_at(trainer.step - 1, args)}
            record |= {key: round(float(value) / counts[key], 5) for key, value in sums.items()}
            record |= {"img_per_s": round(steps * args.batch / seconds, 1),
                       "batch_usage": round(codebook_usage(ids.cpu().numpy(), trainer.model.codebook_size), 4)}
            append_log(out / LOG, record)
            bar.set_postfix(loss=record["loss"], ips=record["img_per_s"])
            sums, counts, steps, t0 = {}, {}, 0, time.perf_counter()
        if deadline.save_due():
            save(trainer, out, val, deadline.elapsed())
    bar.close()
    return save(trainer, out, val, deadline.elapsed())


def main(argv: list[str]) -> Trainer:
    cli = build_parser()
    args = cli.parse_args(argv)
    if min(args.levels) < 2:
        cli.error(f"--levels {args.levels}: every channel needs at least 2 levels")
    if args.max_shift < 0:
        cli.error("--max-shift must be >= 0")
    deadline = Deadline(args.minutes, args.save_every)  # the budget covers start-up and data loading too
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    state = load_checkpoint(out / CKPT, map_location=device)
    torch.manual_seed(args.seed)
    if args.init and not state:
        config = json.loads((Path(args.init) / "config.json").read_text())
        if args.new_decoder:
            config |= {"dec_channels": list(args.dec_channels), "dec_blocks": args.dec_blocks}
    else:
        config = state["model_config"] if state else model_config_from_args(args)
    args.freeze_encoder = args.freeze_encoder or bool(state and state.get("freeze_encoder"))  # stays frozen on resume
    trainer = Trainer(args, config)
    if state:
        trainer.restore(state)
        del state
    train_images = torch.from_numpy(load_split(args.data, "train")).to(device)
    val = load_split(args.data, "val")
    val = val[np.linspace(0, len(val) - 1, min(len(val), args.val_images)).round().astype(int)]
    params = sum(p.numel() for p in trainer.model.parameters())
    start = {"event": "start", "step": trainer.step, "params": params, "n_train": len(train_images),
             "n_val_scored": len(val), "device": str(device), "args": vars(args)}
    append_log(out / LOG, start)
    print(json.dumps(start))
    if trainer.step < args.steps and args.minutes > 0:
        record = train(trainer, train_images, val, out, deadline)
        print(f"stopped at step {trainer.step}/{args.steps}; {json.dumps(record)}")
    print("TRAINING COMPLETE" if trainer.step >= args.steps else "NOT DONE: run the same command again to resume")
    if args.export:
        path = export_weights(trainer.ema.module, args.export)
        print(f"exported EMA weights (fp16) to {path} ({path.stat().st_size} bytes)")
    return trainer
