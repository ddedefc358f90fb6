"""MaskMamba: hybrid Mamba-Transformer masked image generation (Chen et al., arXiv 2409.19937)."""
from maskmamba.configs import SIZES, VARIANTS
from maskmamba.models import Condition, GeneratorConfig, build_model, load_generator
from maskmamba.sampler import SampleStep, guidance, maskgit
from maskmamba.settings import SamplingSettings

__all__ = [
    "SIZES", "VARIANTS", "Condition", "GeneratorConfig", "Pipeline", "SampleStep", "SamplingSettings", "build_model",
    "guidance", "load_generator", "maskgit",
]


def __getattr__(name: str):
    if name == "Pipeline":  # imported on demand: it pulls in the tokenizer and PIL
        from maskmamba.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
