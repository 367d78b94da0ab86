"""Benchmarks of the stack, side by side on one machine (`python bench/run.py`)."""
