#!/usr/bin/env python3
"""Benchmarks of the stack: `python bench/run.py --help` (the harness is bench/main.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, its own directory comes first on the path: the project's root must, so
# that `bench` and the services import as packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.main import main  # noqa: E402

if __name__ == "__main__":
    main()
