"""python -m maskmamba.eval <subcommand> [args]: dispatch to the module that evaluates each model."""
from __future__ import annotations

import sys

from maskmamba.cli import dispatch

SUBCOMMANDS = {  # subcommand -> module with `main(argv)`
    "tokenizer": "maskmamba.eval.tokenizer",
    "generator": "maskmamba.eval.generator",
    "fid-fp16": "maskmamba.eval.fid",
    "paraphrase-states": "maskmamba.eval.paraphrases",
    "paraphrase-grid": "maskmamba.eval.paraphrase_grid",
    "match-accuracy": "maskmamba.eval.match_accuracy",
    "matched-change": "maskmamba.eval.matched_change",
    "scaling": "maskmamba.eval.scaling",
    "merge": "maskmamba.eval.merge",
    "cfg-grid": "maskmamba.eval.cfg_grid",
    "cards": "maskmamba.eval.cards",
    "fid-trend": "maskmamba.eval.fid_trend",
}

if __name__ == "__main__":
    dispatch("eval", SUBCOMMANDS, sys.argv[1:])
