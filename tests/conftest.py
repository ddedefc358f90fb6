"""Shared fixtures: small deterministic models, a saved tiny checkpoint folder, and the serving runtime over
untrained stand-in checkpoints (`assets`, `runtime`; a module may define its own under the same names)."""
from __future__ import annotations

import json

import pytest
import torch

from maskmamba import build_model

NUM_CLASSES = 7


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A folder laid out like assets/<variant>/: generator, tokenizer and class list (untrained weights)."""
    from maskmamba.models.tokenizer import VQTokenizer

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).save_pretrained(folder)
    VQTokenizer().save_pretrained(folder / "tokenizer")
    (folder / "classes.json").write_text(json.dumps([f"class {i}" for i in range(NUM_CLASSES)]))
    return folder


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Stand-in checkpoints of every demo variant, laid out like assets/."""
    from maskmamba.dev_assets import make_dev_assets

    return make_dev_assets(tmp_path_factory.mktemp("dev-assets"))


@pytest.fixture(scope="module")
def runtime(assets):
    """The serving runtime over `assets`, on the CPU."""
    from maskmamba.serving import Runtime

    return Runtime(assets, "cpu")
