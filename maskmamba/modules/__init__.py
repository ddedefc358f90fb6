"""Token mixers and layers. Kernels they call live in maskmamba.ops."""
from .attention import CrossAttention, SelfAttention
from .bimamba import BiMambaV2, BiMambaVim
from .block import Block, count_params, dropout_layer, fit_width, make_block, make_mixer
from .layout import SeqLayout
from .mlp import Mlp
from .mmamba import MMamba
from .parallel import ParallelMixer
from .ssm import MultiScan

__all__ = [
    "Block", "BiMambaV2", "BiMambaVim", "CrossAttention", "MMamba", "Mlp", "MultiScan", "ParallelMixer",
    "SeqLayout", "SelfAttention", "count_params", "dropout_layer", "fit_width", "make_block", "make_mixer",
]
