"""Server-drawn SVG charts: no script, no inline style (the Content-Security-Policy forbids both), text escaped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from html import escape

from markupsafe import Markup

from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb

DISCLOSED_COLOUR = "#1d4f91"  # both pass WCAG AA contrast against white
REFUSED_COLOUR = "#a4300b"


@dataclass(frozen=True, slots=True)
class Series:
    """Counts per group and day: days in order, groups in order, {(group, day): (disclosed, refused)}."""

    days: list[date]
    groups: list[str]
    counts: dict[tuple[str, date], tuple[int, int]]

    def total(self, group: str) -> tuple[int, int]:
        pairs = [self.counts.get((group, d), (0, 0)) for d in self.days]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def series(disclosures: Iterable[audit_pb.AuditEntry], refusals: Iterable[audit_pb.AuditEntry],
           key: Callable[[audit_pb.AuditEntry], str]) -> Series:
    counts: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    for column, entries in ((0, disclosures), (1, refusals)):
        for entry in entries:
            counts[(key(entry), entry.occurred_at.ToDatetime(tzinfo=UTC).date())][column] += 1
    if not counts:
        return Series([], [], {})
    first, last = min(d for _, d in counts), max(d for _, d in counts)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)][-31:]
    return Series(days, sorted({g for g, _ in counts}), {k: (v[0], v[1]) for k, v in counts.items()})


def bar_chart(data: Series, title: str) -> Markup:
    """One row of paired bars per group (disclosed, refused), one pair per day, on a shared scale."""
    if not data.groups:
        return Markup("<p>Nothing to chart yet.</p>")
    label_w, bar_w, row_h, top = 150, 10, 70, 30
    width = max(480, label_w + len(data.days) * (2 * bar_w + 4) + 80)  # room for the legend and the last date
    height = top + row_h * len(data.groups) + 40
    peak = max(max(v) for v in data.counts.values()) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-labelledby="chart-{abs(hash(title))}">',
             f'<title id="chart-{abs(hash(title))}">{escape(title)}</title>',
             f'<rect x="{label_w}" y="6" width="10" height="10" fill="{DISCLOSED_COLOUR}"/>'
             f'<text x="{label_w + 14}" y="15" font-size="11">disclosed</text>'
             f'<rect x="{label_w + 90}" y="6" width="10" height="10" fill="{REFUSED_COLOUR}"/>'
             f'<text x="{label_w + 104}" y="15" font-size="11">refused</text>']
    for row, group in enumerate(data.groups):
        base = top + row_h * (row + 1) - 10
        disclosed, refused = data.total(group)
        parts.append(f'<text x="4" y="{base - 20}" font-size="12">{escape(group)}</text>'
                     f'<text x="4" y="{base - 4}" font-size="10">{disclosed} disclosed, {refused} refused</text>'
                     f'<line x1="{label_w}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#555"/>')
        for col, day in enumerate(data.days):
            x = label_w + col * (2 * bar_w + 4)
            for offset, (value, colour) in enumerate(zip(data.counts.get((group, day), (0, 0)),
                                                         (DISCLOSED_COLOUR, REFUSED_COLOUR), strict=True)):
                if value:
                    h = max(1.0, (row_h - 20) * value / peak)
                    parts.append(f'<rect x="{x + offset * bar_w}" y="{base - h:.1f}" width="{bar_w - 1}" '
                                 f'height="{h:.1f}" fill="{colour}"><title>{escape(group)} {day.isoformat()}: '
                                 f'{value} {"disclosed" if offset == 0 else "refused"}</title></rect>')
    for col, day in enumerate(data.days):
        if col % 7 == 0 or col == len(data.days) - 1:
            x = label_w + col * (2 * bar_w + 4)
            parts.append(f'<text x="{x}" y="{height - 12}" font-size="10">{day.isoformat()}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through html.escape


def duration(delta: timedelta) -> str:
    """A short human duration: "2 d 3 h", "3 h 20 min", "45 s"."""
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


ON_TIME_COLOUR = "#256029"
RUNNING_COLOUR = "#505a5f"


def stacked_bars(rows: list[tuple[str, tuple[int, int, int]]], title: str) -> Markup:
    """One horizontal bar per row, split into on time, late and still running (counts beside)."""
    if not rows:
        return Markup("<p>Nothing to chart yet.</p>")
    label_w, bar_max, row_h, top = 110, 360, 34, 30
    width, height = label_w + bar_max + 200, top + row_h * len(rows) + 10
    peak = max(sum(counts) for _, counts in rows) or 1
    colours = (ON_TIME_COLOUR, REFUSED_COLOUR, RUNNING_COLOUR)
    names = ("on time", "late", "running")
    ident = f"chart-{abs(hash(title))}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-labelledby="{ident}"><title id="{ident}">{escape(title)}</title>']
    for n, (name, colour) in enumerate(zip(names, colours, strict=True)):
        parts.append(f'<rect x="{label_w + n * 100}" y="6" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{label_w + n * 100 + 14}" y="15" font-size="11">{name}</text>')
    for row, (label, counts) in enumerate(rows):
        y = top + row * row_h
        parts.append(f'<text x="4" y="{y + 16}" font-size="12">{escape(label)}</text>')
        x = float(label_w)
        for value, colour, name in zip(counts, colours, names, strict=True):
            if value:
                w = bar_max * value / peak
                parts.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="18" fill="{colour}">'
                             f'<title>{escape(label)}: {value} {name}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}" font-size="11">{counts[0]} on time, {counts[1]} late, '
                     f'{counts[2]} running</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through html.escape
