"""`python -m maskmamba.<group> <subcommand> [args]`: hand the arguments to the module behind each subcommand."""
from __future__ import annotations

import importlib
import sys


def dispatch(group: str, subcommands: dict[str, str], argv: list[str]) -> None:
    """Call `main(argv[1:])` of the module that `subcommands` maps argv[0] to; exit with the usage otherwise."""
    if not argv or argv[0] not in subcommands:
        names = ",".join(subcommands)
        sys.exit(f"usage: python -m maskmamba.{group} {{{names}}} [args]  (-h after a subcommand lists its options)")
    importlib.import_module(subcommands[argv[0]]).main(argv[1:])


def parse_floats(text: str) -> list[float]:
    """'1,2.5,' -> [1.0, 2.5]: a comma-separated list of numbers for an argparse option ('' for none)."""
    return [float(x) for x in text.split(",") if x]
