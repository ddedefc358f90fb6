"""Evaluation: FID (`fid`) and per-model metrics.

Run as `python -m maskmamba.eval <subcommand> ...`.
"""
