"""Timing helpers the benchmarks share: one call timed, and a median line with its spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> str:
    """Median in ms with min, max and n: the machines are noisy, a median alone hides it."""
    return (f"{statistics.median(samples) * 1000:8.1f} ms median "
            f"(min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f}, n={len(samples)})")


def with_bytecode(env: Mapping[str, str], work: Path) -> dict[str, str]:
    """`env` for subprocesses, ours and conda's alike, with a bytecode cache, as installed
    packages have one: a shell with PYTHONDONTWRITEBYTECODE=1 and no __pycache__ would compile
    every module on every call. Run each command once untimed to fill it."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return out
