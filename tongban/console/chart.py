"""Server-rendered SVG charts for the indicators page: no JavaScript, no chart library, nothing fetched.

Every label is escaped here (the SVG is inserted into the page as markup) and masked like the rest of the page."""
from __future__ import annotations

from html import escape

from markupsafe import Markup

from tongban.codes import mask_text

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16", "#4a5568")


def _text(value: object) -> str:
    return escape(mask_text(str(value)), quote=True)


def stacked_bars(days: list[str], series: dict[str, dict[str, int]], *, title: str, width: int = 880,
                 height: int = 260) -> Markup:
    """One bar per day, stacked by series (department), with a legend; a day's total in its tooltip."""
    left, right, top, bottom = 48, 12, 28, 46
    legend_rows = (len(series) + 2) // 3
    full_height = height + legend_rows * 18
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.get(day, 0) for s in series.values()) for day in days]
    peak = _nice(max(totals + [1]))
    step = plot_w / max(len(days), 1)
    bar = max(step * 0.7, 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {full_height}" '
             f'width="{width}" height="{full_height}" aria-label="{_text(title)}">',
             f'<title>{_text(title)}</title>',
             f'<text x="{left}" y="16" class="chart-title">{_text(title)}</text>']
    for i in range(5):  # horizontal grid with values
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{value:.0f}</text>')
    label_every = max(1, len(days) // 10)
    for index, day in enumerate(days):
        x = left + index * step + (step - bar) / 2
        y = top + plot_h
        for colour, (name, counts) in zip(_colours(len(series)), series.items()):
            n = counts.get(day, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{_text(day)} {_text(name)}: {n}</title></rect>')
        if index % label_every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="axis">'
                         f'{_text(day[5:])}</text>')
    for i, (colour, name) in enumerate(zip(_colours(len(series)), series)):
        lx, ly = left + (i % 3) * (plot_w / 3), height - 8 + (i // 3) * 18
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{lx + 18:.1f}" y="{ly}" class="legend">{_text(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def distribution(counts: dict[int, int], labels: dict[int, str], *, title: str, width: int = 420) -> Markup:
    """Horizontal bars, one per category (好差评 scores), with counts and shares."""
    total = sum(counts.values()) or 1
    row, left = 22, 170
    height = 28 + row * len(labels)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{_text(title)}"><title>{_text(title)}</title>']
    for i, (key, label) in enumerate(labels.items()):
        n = counts.get(key, 0)
        y = 20 + i * row
        w = (width - left - 70) * n / total
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" class="axis">{_text(key)} {_text(label)}</text>'
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="15" fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{left + w + 6:.1f}" y="{y + 12}" class="axis">{n} ({100 * n / total:.0f}%)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(value: int) -> int:
    """The axis top: the value rounded up to 4 × 1, 2, 2.5 or 5 × 10^k (grid lines at round numbers)."""
    magnitude = 1
    while True:
        for step in (1, 2, 2.5, 5):
            if 4 * step * magnitude >= value:
                return int(4 * step * magnitude) if float(4 * step * magnitude).is_integer() else value
        magnitude *= 10


def _colours(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]
