"""A small SVG line plot for the benchmark scripts (no plotting library is
needed to read the results): series of (x, y) points on linear axes."""

COLORS = ["#888888", "#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#8d5fd3"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 420, 70, 200, 40, 50


def nice_step(span):
    """A round tick step giving about 6 ticks over `span`."""
    raw = span / 6 if span > 0 else 1
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def line_plot(series, xlabel, ylabel, title):
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max(ys) * 1.05 if ys and max(ys) > 0 else 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y):
        return TOP + ph - y / y1 * ph

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15">%s</text>' % (LEFT, title)]
    step = nice_step(y1)
    y = 0.0
    while y <= y1:
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>'
                   % (LEFT, LEFT + pw, py(y), py(y)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (LEFT - 6, py(y) + 4, y))
        y += step
    xstep = max(1, round(nice_step(x1 - x0)))
    x = x0 - x0 % xstep
    while x <= x1:
        if x >= x0:
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%g</text>'
                       % (px(x), TOP + ph + 18, x))
        x += xstep
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>'
               % (LEFT, LEFT + pw, TOP + ph, TOP + ph))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>'
               % (LEFT, LEFT, TOP, TOP + ph))
    out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>'
               % (LEFT + pw // 2, H - 10, xlabel))
    out.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">%s</text>'
               % (TOP + ph // 2, TOP + ph // 2, ylabel))
    for i, (name, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = " ".join("%.1f,%.1f" % (px(x), py(y)) for x, y in sorted(pts))
        dash = ' stroke-dasharray="5,4"' if i < 2 else ""
        out.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>'
                   % (color, dash, path))
        for x, y in pts:
            out.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (px(x), py(y), color))
        ly = TOP + 10 + 20 * i
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                   % (LEFT + pw + 15, LEFT + pw + 40, ly, ly, color, dash))
        out.append('<text x="%d" y="%d">%s</text>' % (LEFT + pw + 46, ly + 4, name))
    out.append("</svg>")
    return "\n".join(out) + "\n"
