"""Report charts with matplotlib (Agg, no GUI), as self-contained SVG data URIs.

Each chart is an ``<img src="data:image/svg+xml;base64,...">``: vector (prints
sharply), no external file, and inert: a browser runs no script in an SVG loaded
as an image. Labels are dates and numbers only, never CRM text; mathtext is off
anyway (``$`` in a label stays a dollar sign). Output is deterministic (fixed
SVG id salt, no creation date).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import FuncFormatter  # noqa: E402

POSITIVE, NEGATIVE, MUTED, INK = "#2f6db5", "#c0392b", "#9aa5b1", "#1f2933"
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.edgecolor": "#cbd2d9",
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.parse_math": False,
    "svg.hashsalt": "revattr",
    "svg.fonttype": "path",
}


def compact_money(value: float, _position: object = None) -> str:
    """Axis labels: 1.2M, 350k, -20k, 0."""
    size = abs(value)
    if size >= 1e9:
        text = f"{value / 1e9:.1f}B"
    elif size >= 1e6:
        text = f"{value / 1e6:.1f}M"
    elif size >= 1e3:
        text = f"{value / 1e3:.0f}k"
    else:
        text = f"{value:.0f}"
    return text.replace(".0M", "M").replace(".0B", "B")


def _data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def revenue_chart(series: Sequence[tuple[dt.date, Decimal]], bucket: str, end: dt.date) -> str:
    """Bars of booked revenue per day or week (negative bars red); a data URI."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(9.0, 2.6), dpi=100)
        fig.subplots_adjust(left=0.065, right=0.99, top=0.96, bottom=0.1)
        ax = fig.add_subplot()
        starts = [start for start, _ in series]
        values = [float(value) for _, value in series]
        if bucket == "day":
            widths = [0.8] * len(starts)
        else:  # a week, clipped at the period's start and end
            bounds = [*starts[1:], end]
            widths = [max(1, (b - a).days) - 0.8 for a, b in zip(starts, bounds, strict=True)]
        ax.bar(
            starts,
            values,
            width=widths,
            align="edge",
            color=[POSITIVE if v >= 0 else NEGATIVE for v in values],
        )
        ax.axhline(0, color=MUTED, linewidth=0.8)
        ax.yaxis.set_major_formatter(FuncFormatter(compact_money))
        ax.grid(axis="y", color="#e4e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        if starts:
            ax.set_xlim(starts[0] - dt.timedelta(days=0.5), end + dt.timedelta(days=0.5))
            step = max(1, len(starts) // 10) if bucket == "day" else max(1, len(starts) // 13)
            ticks = starts[::step]
            if bucket == "week" and len(ticks) > 1 and (ticks[1] - ticks[0]).days < 4:
                # a clipped first week: its label would collide with the next one
                ticks = ticks[1:]
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{d.day} {d.strftime('%b')}" for d in ticks])
        if not any(values):
            ax.text(
                0.5,
                0.5,
                "No booked revenue in this period",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=MUTED,
            )
            ax.set_ylim(-1, 1)
        return _data_uri(fig)


def comparison_chart(items: Sequence[tuple[str, Decimal]]) -> str:
    """Horizontal bars: this period vs the comparison periods; a data URI."""
    with matplotlib.rc_context({**_RC, "font.size": 7.5}):
        fig = Figure(figsize=(3.4, 1.6), dpi=100)
        fig.subplots_adjust(left=0.2, right=0.95, top=0.96, bottom=0.16)
        ax = fig.add_subplot()
        labels = [label for label, _ in items][::-1]
        values = [float(value) for _, value in items][::-1]
        colors = [MUTED] * (len(values) - 1) + [POSITIVE]
        colors = [c if v >= 0 else NEGATIVE for c, v in zip(colors, values, strict=True)]
        ax.barh(labels, values, color=colors, height=0.6)
        ax.xaxis.set_major_formatter(FuncFormatter(compact_money))
        ax.axvline(0, color=MUTED, linewidth=0.8)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="x", color="#e4e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        return _data_uri(fig)
