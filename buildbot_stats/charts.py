"""Line charts as inline SVG, written in plain Python.

Why not a charting library: the report must open offline, from a file, years later, and the
package must stay light (it is installed on build masters). A JavaScript library would have
to be inlined (hundreds of kB per report) or fetched from a CDN (no offline); matplotlib or
plotly would add tens of MB of dependencies to a master for a few line charts. Time series
line charts with axes, ticks and hover labels (SVG ``<title>``) are a hundred lines.
"""

from __future__ import annotations

import datetime
import html
import math

PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
           '#17becf']
WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
#: The width of a chart's plot, in pixels: no line needs more marks.
PLOT_WIDTH = WIDTH - LEFT - RIGHT
MAX_MARKERS = 400  # hover markers per line; beyond, the line alone (keeps files small)
#: The colours of the events of :func:`lineChart` (changes for the worse, for the better).
EVENT_COLORS = {'worse': '#d62728', 'better': '#2ca02c'}
LEGEND_ROW = 16  # height of a row of the legend, above the plot
CHAR_WIDTH = 7  # about, at font-size 11: where the next legend item starts


def legendRows(labels, width):
    """``[[(index, label, x), ...], ...]``: the legend items in rows no wider than
    ``width``, each with its x offset."""
    rows, row, lx = [], [], 0
    for n, label in enumerate(labels):
        item = 24 + CHAR_WIDTH * len(label)
        if row and lx + item > width:
            rows.append(row)
            row, lx = [], 0
        row.append((n, label, lx))
        lx += item
    if row:
        rows.append(row)
    return rows


def niceTicks(lo, hi, count=5):
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(ticks[-1] + step)
    return ticks


def formatNumber(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.6g}" if v == int(v) else f"{v:.4g}"


# time label formats, coarse to fine: an axis takes the first, from the one its span
# suggests, whose tick labels all differ (".%3": milliseconds, ".%6": microseconds)
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%d %H:%M"]
CLOCK_FORMATS = ["%H:%M", "%H:%M:%S", "%H:%M:%S.%3", "%H:%M:%S.%6"]
MIN_SPAN = 1e-3  # seconds: a shorter time axis is widened to this (ticks 250 us apart)


def _spanFormat(span):
    if span >= 2 * 86400:
        return "%Y-%m-%d"
    return "%H:%M:%S" if span < 600 else "%H:%M"


def formatTime(seconds, span, fmt=None):
    fmt = fmt or _spanFormat(span)
    digits = int(fmt[-1]) if fmt.endswith(('.%3', '.%6')) else 0
    t = datetime.datetime.fromtimestamp(round(seconds, digits) if digits else seconds,
                                        datetime.timezone.utc)
    if digits:
        return t.strftime(fmt[:-3]) + "." + t.strftime("%f")[:digits]
    return t.strftime(fmt)


def timeLabels(ticks, span):
    """The labels of the time axis ticks, never two the same: a sub-second span shows
    milliseconds, a span of a few days the hours."""
    fmt = _spanFormat(span)
    ladder = DATE_FORMATS if fmt in DATE_FORMATS else CLOCK_FORMATS[CLOCK_FORMATS.index(fmt):]
    for fmt in ladder:
        labels = [formatTime(t, span, fmt) for t in ticks]
        if len(set(labels)) == len(labels):
            break
    return labels


def columnExtremes(pts, x):
    """What a line through many points looks like, with few: per pixel column the first,
    the lowest, the highest and the last point (``pts`` sorted by time; the first of equal
    lowest or highest values)."""
    # one pass with plain comparisons: the page draws lines of 10,000 points and more
    cols = [int(x(p[0])) for p in pts]
    n = len(pts)
    out = []
    i = 0
    while i < n:
        col = cols[i]
        lo = hi = i
        vlo = vhi = pts[i][1]
        j = i + 1
        while j < n and cols[j] == col:
            v = pts[j][1]
            if v < vlo:
                vlo, lo = v, j
            elif v > vhi:
                vhi, hi = v, j
            j += 1
        out.extend(pts[k] for k in sorted({i, j - 1, lo, hi}))
        i = j
    return out


def lineChart(lines, y_label="", title="", styles=None, max_markers=MAX_MARKERS,
              events=()):
    """An ``<svg>`` element: ``lines`` is ``[(label, [(time, value), ...]), ...]``.

    A point may carry a third item, a dict with ``tip`` (the hover text, instead of
    ``label: value at time``) and ``href`` (the marker becomes a link, opened in the top
    window). ``styles`` maps a label to ``'line'`` (the default: a line with markers),
    ``'points'`` (markers only) or ``'dashed'`` (a dashed line, no markers).

    ``events``: ``[(time, tip, href, kind), ...]`` drawn as vertical lines across the plot
    (where a change began): ``kind`` ``'worse'`` (red) or ``'better'`` (green), ``tip`` the
    hover text, ``href`` a link or None. An event outside the time axis is not drawn.
    """
    styles = styles or {}
    points = [p for _, pts in lines for p in pts]
    e = html.escape
    # the legend has rows of its own above the plot: it never covers a point
    legend = legendRows([label for label, _ in lines], WIDTH - LEFT - RIGHT) \
        if len(lines) > 1 and points else []
    top = TOP + LEGEND_ROW * len(legend)
    height = HEIGHT + LEGEND_ROW * len(legend)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
           f'width="{WIDTH}" height="{height}" role="img" aria-label="{e(title)}">']
    if not points:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>'
                   '</svg>')
        return "".join(out)
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    if t1 == t0:
        t0, t1 = t0 - 1, t1 + 1
    elif t1 - t0 < MIN_SPAN:
        middle = (t0 + t1) / 2
        t0, t1 = middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    yticks = niceTicks(min(0.0, min(p[1] for p in points)), max(p[1] for p in points))
    y0, y1 = yticks[0], yticks[-1]
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t):
        return LEFT + (t - t0) / (t1 - t0) * pw

    def y(v):
        return top + ph - (v - y0) / (y1 - y0) * ph

    out.append('<g class="axes" font-size="11" fill="#444">')
    for v in yticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                   f'{formatNumber(v)}</text>')
    span = t1 - t0
    xticks = [t0 + span * i / 4 for i in range(5)]
    for i, (t, label) in enumerate(zip(xticks, timeLabels(xticks, span))):
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<text x="{x(t):.1f}" y="{height - BOTTOM + 16}" text-anchor="{anchor}">'
                   f'{e(label)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{top + ph}" y2="{top + ph}" '
               'stroke="#888"/>')
    if y_label:
        out.append(f'<text x="14" y="{top + ph / 2}" transform="rotate(-90 14 {top + ph / 2})" '
                   f'text-anchor="middle">{e(y_label)}</text>')
    out.append('</g>')
    # the events under the lines and points: a build's marker stays on top to hover
    for t, tip, href, kind in events:
        if not t0 <= t <= t1:
            continue
        color = EVENT_COLORS.get(kind, '#555')
        mark = (f'<g class="event" data-kind="{e(kind)}"><line x1="{x(t):.1f}" '
                f'x2="{x(t):.1f}" y1="{top}" y2="{top + ph}" stroke="{color}" '
                f'stroke-width="2" stroke-dasharray="3 3"/><polygon points="'
                f'{x(t) - 5:.1f},{top} {x(t) + 5:.1f},{top} {x(t):.1f},{top + 7}" '
                f'fill="{color}"/><title>{e(tip)}</title></g>')
        if href:
            mark = f'<a href="{e(href)}" target="_top">{mark}</a>'
        out.append(mark)
    # markers only ('points', the builds) are drawn last: on top, so hover and click reach
    # them and not a line's marker at the same place
    order = sorted(range(len(lines)), key=lambda n: styles.get(lines[n][0]) == 'points')
    for n in order:
        label, pts = lines[n]
        color = PALETTE[n % len(PALETTE)]
        style = styles.get(label, 'line')
        pts = sorted(pts, key=lambda p: (p[0], p[1]))
        out.append(f'<g class="line" data-label="{e(label)}" data-style="{style}">')
        if style != 'points':
            drawn = pts if len(pts) <= 2 * pw else columnExtremes(pts, x)
            path = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in drawn)
            dash = ' stroke-dasharray="6 4"' if style == 'dashed' else ''
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} '
                       f'points="{path}"/>')
        if style == 'points' and len(pts) > max_markers:
            # too many for one element each: every point as a dot of one path
            # one dot per pixel: more would draw over each other
            seen = dict.fromkeys((round(x(p[0])), round(y(p[1]))) for p in pts)
            dots = "".join(f"M{px} {py}h0" for px, py in seen)
            out.append(f'<path class="dots" d="{dots}" stroke="{color}" stroke-width="4" '
                       'stroke-linecap="round" fill="none"/>')
        if style != 'dashed' and len(pts) <= max_markers:
            for p in pts:
                t, v = p[0], p[1]
                meta = p[2] if len(p) > 2 and p[2] else {}
                tip = meta.get('tip') or f"{label}: {formatNumber(v)} at {formatTime(t, 0)} UTC"
                marker = (f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{color}">'
                          f'<title>{e(tip)}</title></circle>')
                if meta.get('href'):
                    marker = f'<a href="{e(meta["href"])}" target="_top">{marker}</a>'
                out.append(marker)
        out.append('</g>')
    for row_number, row in enumerate(legend):
        ly = TOP - 8 + LEGEND_ROW * row_number  # above the plot, which starts at ``top``
        for n, label, lx in row:
            color = PALETTE[n % len(PALETTE)]
            out.append(f'<rect class="legend" x="{LEFT + lx}" y="{ly + 2}" width="10" '
                       f'height="10" fill="{color}"/><text x="{LEFT + lx + 14}" y="{ly + 11}" '
                       f'font-size="11">{e(label)}</text>')
    out.append('</svg>')
    return "".join(out)


#: The colour of each test outcome in :func:`outcomeStrip` (None: the test did not run).
OUTCOME_COLOURS = {'passed': '#2ca02c', 'failed': '#d62728', 'flaky': '#ff7f0e',
                   'skipped': '#bbbbbb', None: '#ffffff'}
MAX_CELLS = 600  # builds drawn in a strip (the latest): one pixel each at least


def outcomeStrip(cells, title=""):
    """An ``<svg>`` pass/fail strip: one cell per build, oldest first, coloured by outcome.

    ``cells`` is ``[(outcome, tip, href), ...]``: ``outcome`` one of
    :data:`OUTCOME_COLOURS`' keys, ``tip`` the hover text, ``href`` the build's link (or
    None). Only the latest :data:`MAX_CELLS` are drawn.
    """
    e = html.escape
    cells = list(cells)[-MAX_CELLS:]
    height = 28
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
           f'width="{WIDTH}" height="{height}" role="img" aria-label="{e(title)}" '
           'class="strip">']
    if not cells:
        out.append(f'<text x="{WIDTH / 2}" y="18" text-anchor="middle">no data</text></svg>')
        return "".join(out)
    width = WIDTH / len(cells)
    for n, (outcome, tip, href) in enumerate(cells):
        colour = OUTCOME_COLOURS.get(outcome, OUTCOME_COLOURS[None])
        cell = (f'<rect x="{n * width:.2f}" y="2" width="{max(width - 1, 1):.2f}" '
                f'height="{height - 4}" fill="{colour}" stroke="#ddd" stroke-width="0.5" '
                f'data-outcome="{e(str(outcome))}"><title>{e(tip)}</title></rect>')
        if href:
            cell = f'<a href="{e(href)}" target="_top">{cell}</a>'
        out.append(cell)
    out.append('</svg>')
    return "".join(out)
