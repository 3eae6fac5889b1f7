"""The materialization-coverage picture: one bar per version over a shared time axis, covered
intervals filled, failed-and-not-covered intervals hatched, gaps left empty (DESIGN §13).

Pure SVG (no script), scaled by ``viewBox`` so it fits any width; colours come from CSS classes so
the page's light and dark themes apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

WIDTH = 1000
LABEL = 70
ROW = 26
BAR = 16
AXIS = 28


def coverage_svg(versions: Sequence[Mapping[str, Any]]) -> str:
    """SVG markup for ``versions`` (dicts with ``version``, ``covered`` and ``failed`` lists of
    ``{start, end}``), or an empty string when nothing was ever materialized."""
    spans = [i for v in versions for key in ("covered", "failed") for i in v.get(key, [])]
    if not spans:
        return ""
    lo = min(i["start"] for i in spans)
    hi = max(i["end"] for i in spans)
    total = (hi - lo).total_seconds() or 1.0
    plot = WIDTH - LABEL - 10

    def x(moment: datetime) -> float:
        return float(LABEL + plot * (moment - lo).total_seconds() / total)

    height = len(versions) * ROW + AXIS
    parts = [
        f'<svg class="coverage" role="img" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="Materialization coverage per version">',
        '<defs><pattern id="failed-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect class="failed-bg" width="6" height="6"/>'
        '<line class="failed-line" x1="0" y1="0" x2="0" y2="6" stroke-width="3"/></pattern></defs>',
    ]
    for row, version in enumerate(versions):
        y = row * ROW + 4
        label = escape(str(version["version"]))
        parts.append(f'<text class="label" x="0" y="{y + BAR - 3}">{label}</text>')
        parts.append(f'<rect class="track" x="{LABEL}" y="{y}" width="{plot}" height="{BAR}" rx="2"/>')
        for kind in ("covered", "failed"):
            for span in version.get(kind, []):
                left, right = x(span["start"]), x(span["end"])
                title = escape(f"{label} {kind}: {_stamp(span['start'])} to {_stamp(span['end'])}")
                parts.append(f'<rect class="{kind}" x="{left:.1f}" y="{y}" width="{max(right - left, 1.0):.1f}" '
                             f'height="{BAR}"><title>{title}</title></rect>')
    axis_y = len(versions) * ROW + 4
    parts.append(f'<line class="axis" x1="{LABEL}" y1="{axis_y}" x2="{LABEL + plot}" y2="{axis_y}"/>')
    for moment in _ticks(lo, hi):
        tx = x(moment)
        anchor = "start" if tx < LABEL + 40 else "end" if tx > WIDTH - 60 else "middle"
        parts.append(f'<line class="axis" x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 4}"/>')
        parts.append(f'<text class="tick" x="{tx:.1f}" y="{axis_y + 18}" text-anchor="{anchor}">'
                     f'{escape(_tick_label(moment, hi - lo))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: datetime, hi: datetime, count: int = 5) -> list[datetime]:
    step = (hi - lo) / (count - 1)
    return [lo + step * i for i in range(count)]


def _tick_label(moment: datetime, span: timedelta) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if span <= timedelta(days=10) else moment.strftime("%Y-%m-%d")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
