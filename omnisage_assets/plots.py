"""Small plots and tables for asset metadata (markdown renders in the Dagster UI)."""

from __future__ import annotations

import base64
import io

import dagster as dg
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def line_plot_md(x: list[float], series: dict[str, list[float]], xlabel: str, title: str) -> dg.MetadataValue:
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    for name, ys in series.items():
        ax.plot(x[: len(ys)], ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")


def table_md(rows: list[dict], columns: list[str]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))
