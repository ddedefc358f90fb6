"""Tests of the maskmamba library and demo."""
