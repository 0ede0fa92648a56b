"""Small plots and tables for asset metadata (markdown renders in the Dagster UI)."""

from __future__ import annotations

import base64
import io

import dagster as dg
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _figure_md(fig: plt.Figure, ax: plt.Axes, title: str) -> dg.MetadataValue:
    """The figure as an inline PNG: the Dagster UI renders markdown images without files."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")


def line_plot_md(x: list[float], series: dict[str, list[float]], xlabel: str, title: str) -> dg.MetadataValue:
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    for name, ys in series.items():
        ax.plot(x[: len(ys)], ys, label=name)
    ax.set_xlabel(xlabel)
    return _figure_md(fig, ax, title)


def degree_plot_md(degrees: dict[str, np.ndarray], title: str) -> dg.MetadataValue:
    """Log-log complementary CDF: the share of nodes with degree >= d, per series."""
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=90)
    for name, degree in degrees.items():
        if len(degree):
            values, counts = np.unique(degree, return_counts=True)
            share_at_least = counts[::-1].cumsum()[::-1] / len(degree)
            ax.step(values, share_at_least, where="post", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("degree d")
    ax.set_ylabel("share of nodes with degree >= d")
    return _figure_md(fig, ax, title)


def table_md(rows: list[dict], columns: list[str]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))
