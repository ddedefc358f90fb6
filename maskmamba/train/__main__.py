"""python -m maskmamba.train <subcommand> [args]: dispatch to the module that trains each model."""
from __future__ import annotations

import sys

from maskmamba.cli import dispatch

SUBCOMMANDS = {  # subcommand -> module with `main(argv)`
    "tokenizer": "maskmamba.train.tokenizer",
    "generator": "maskmamba.train.generator",
}

if __name__ == "__main__":
    dispatch("train", SUBCOMMANDS, sys.argv[1:])
