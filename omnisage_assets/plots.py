"""Small plots and tables for asset metadata (markdown renders in the Dagster UI)."""

from __future__ import annotations

import base64
import io

import dagster as dg
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig: plt.Figure, ax: plt.Axes, title: str) -> bytes:
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def png_md(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG inline: the Dagster UI renders markdown images without files."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _figure_md(fig: plt.Figure, ax: plt.Axes, title: str) -> dg.MetadataValue:
    return png_md(_png(fig, ax, title), title)


def grouped_bar_png(rows: list[dict], label: str, columns: list[str], title: str) -> bytes:
    """One group of bars per column, one bar per row (missing values left out)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=90)
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [j + i * width for j, c in enumerate(columns) if row.get(c) is not None]
        ax.bar(xs, [row[c] for c in columns if row.get(c) is not None], width, label=row[label])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))], columns)
    ax.legend(fontsize=7)
    return _png(fig, ax, title)


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
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
