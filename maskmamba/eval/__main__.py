"""python -m maskmamba.eval <subcommand> [args]: dispatch to the module that evaluates each model."""
from __future__ import annotations

import importlib
import sys

# Subcommand -> module with `main(argv)`.
SUBCOMMANDS = {
    "tokenizer": "maskmamba.eval.tokenizer",
    "generator": "maskmamba.eval.generator",
    "fid-fp16": "maskmamba.eval.fid",
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SUBCOMMANDS:
        names = ",".join(SUBCOMMANDS)
        sys.exit(f"usage: python -m maskmamba.eval {{{names}}} [args]  (-h after a subcommand lists its options)")
    importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
