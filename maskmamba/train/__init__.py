"""Training: resumable loops for the tokenizer and the generators.

Run as `python -m maskmamba.train <subcommand> ...`.
"""
