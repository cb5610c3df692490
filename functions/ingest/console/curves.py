"""Training curves as SVG, rendered on the server: one line per run, a point for every epoch."""

from __future__ import annotations

from html import escape

from fermion.model_store import RunRecord

WIDTH, HEIGHT, PAD = 640, 320, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def _value(epoch_loss: float | None, metrics: dict[str, float], metric: str) -> float | None:
    return epoch_loss if metric == "loss" else metrics.get(metric)


def render(runs: list[RunRecord], metric: str = "loss") -> str:
    """An SVG chart of `metric` (`loss` or an evaluation metric) per epoch, the runs overlaid."""
    series = [
        (run, [(e.epoch, v) for e in run.epochs if (v := _value(e.loss, e.metrics, metric)) is not None])
        for run in runs
    ]
    points = [p for _, ps in series for p in ps]
    title = f"{metric} per epoch"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-labelledby="t-{escape(metric)}"><title id="t-{escape(metric)}">{escape(title)}</title>'
    )
    if not points:
        return head + f'<text x="{PAD}" y="{HEIGHT // 2}">no {escape(metric)} recorded yet</text></svg>'
    x_max = max(max(x for x, _ in points), 1)
    y_min, y_max = min(y for _, y in points), max(y for _, y in points)
    if y_max - y_min < 1e-12:
        y_min, y_max = y_min - 0.5, y_max + 0.5

    def sx(x: float) -> float:
        return PAD + (x - 1 if x_max > 1 else 0) * (WIDTH - 2 * PAD) / max(x_max - 1, 1)

    def sy(y: float) -> float:
        return HEIGHT - PAD - (y - y_min) * (HEIGHT - 2 * PAD) / (y_max - y_min)

    parts = [
        head,
        f'<text x="{PAD}" y="18" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<text x="{WIDTH // 2}" y="{HEIGHT - 10}" text-anchor="middle">epoch (1 to {x_max})</text>',
        f'<text x="4" y="{PAD - 8}">{y_max:.4g}</text><text x="4" y="{HEIGHT - PAD}">{y_min:.4g}</text>',
    ]
    for i, (run, ps) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        label = escape(f"{run.model_name} {run.job_id[:8]}")
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ps)
        parts.append(f'<g class="run" data-job="{escape(run.job_id)}"><title>{label}</title>')
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        for x, y in ps:
            parts.append(
                f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}">'
                f"<title>{label} epoch {x}: {y:.4g}</title></circle>"
            )
        parts.append(
            f'<text x="{WIDTH - PAD - 150}" y="{PAD + 16 * i}" fill="{colour}" font-size="12">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
