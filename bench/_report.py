"""Shared printing for benchmarks: a figure beside its same-run baseline, as a ratio."""

from __future__ import annotations


def ratio_line(name: str, value: float, baseline: float, unit: str, target: str) -> str:
    """One aligned line: figure, baseline, ratio and the target it is judged against."""
    ratio = value / baseline if baseline else float("inf")
    return (
        f"{name:<48} {value:12.3f} {unit:<8} baseline {baseline:12.3f} "
        f"ratio {ratio:7.2f}  ({target})"
    )
