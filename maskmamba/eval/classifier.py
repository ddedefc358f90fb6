"""A small CNN that tells the emoji classes apart, trained on real images to judge generated ones.

Images are 128x128 uint8 (N,H,W,3), average-pooled to 64x64; four conv stages (two 3x3 convs each, then
a 2x2 max-pool) and a linear head on the global average. It is an evaluation artefact (safetensors + json):
the one that scores every lease is kept in `judge/classifier`, outside the demo's `assets/`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

INPUT_SIZE = 64
WIDTHS = (32, 64, 96, 128)
WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class EmojiClassifier(nn.Module):
    """uint8 images (N,H,W,3) -> class logits (N, num_classes)."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = WIDTHS, dropout: float = 0.2):
        super().__init__()
        self.num_classes, self.widths = num_classes, tuple(widths)
        chans = (3, *widths)
        self.features = nn.Sequential(*(_stage(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(preprocess(images)).mean(dim=(2, 3)))

    @torch.no_grad()
    def logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Eval-mode logits of a whole uint8 array, in batches, as float32 on the CPU."""
        self.eval()
        device = next(self.parameters()).device
        images = torch.as_tensor(images)
        chunks = [self(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(chunks)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,64,64) in [-1, 1] (area downsampling)."""
    x = images.permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return x if x.shape[-1] == INPUT_SIZE else F.adaptive_avg_pool2d(x, INPUT_SIZE)


def augment(images: torch.Tensor, generator: torch.Generator, shift: int = 8) -> torch.Tensor:
    """Random horizontal flips and translations of up to `shift` pixels (white fill) of uint8 (N,H,W,3)."""
    n, h, w, _ = images.shape
    flip = torch.rand(n, generator=generator, device=generator.device).to(images.device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(2), images)
    padded = F.pad(images.permute(0, 3, 1, 2), (shift,) * 4, value=255)
    dy, dx = (torch.randint(0, 2 * shift + 1, (2,), generator=generator, device=generator.device)).tolist()
    return padded[:, :, dy : dy + h, dx : dx + w].permute(0, 2, 3, 1)


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per row: whether its label is among the k largest logits (k is capped at the class count)."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose label is among the k largest logits."""
    return float(topk_hits(logits, labels, k).float().mean())


def evaluate(model: EmojiClassifier, images: np.ndarray | torch.Tensor, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy of the model on a labelled uint8 image set."""
    return topk_accuracy(model.logits(images), torch.as_tensor(labels).long(), k)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    device: str | torch.device = "cpu",
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    num_classes: int | None = None,
    seed: int = 0,
) -> tuple[EmojiClassifier, float]:
    """Train on (images, labels) with AdamW, a cosine schedule and light augmentation; returns (model, val top-1)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = EmojiClassifier(num_classes or int(max(labels.max(), val_labels.max())) + 1).to(device)
    x = torch.from_numpy(images).to(device)
    y = torch.from_numpy(np.asarray(labels)).long().to(device)
    generator = torch.Generator(device).manual_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    for _ in tqdm(range(epochs), desc="train classifier", unit="epoch"):
        model.train()
        order = torch.randperm(len(x), generator=generator, device=device)
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            loss = F.cross_entropy(model(augment(x[rows], generator)), y[rows], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval(), evaluate(model, val_images, val_labels)


def save_classifier(model: EmojiClassifier, folder: str | Path, meta: dict) -> None:
    """Write folder/classifier.safetensors and folder/classifier.json (architecture + `meta`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    config = {"num_classes": model.num_classes, "widths": list(model.widths), **meta}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load_classifier(folder: str | Path, device: str | torch.device = "cpu") -> tuple[EmojiClassifier, dict]:
    """The model saved by save_classifier (eval mode, on `device`) and its json."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    model = EmojiClassifier(config["num_classes"], tuple(config["widths"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model.to(device).eval(), config
