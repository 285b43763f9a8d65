"""Reports of ``compare``: ``reports/accuracy.json`` for machines, ``accuracy.md`` and a
self-contained ``accuracy.html`` for people.

The HTML page carries its own CSS and draws its plots as inline SVG with the small functions
below: no JavaScript, no font or script from anywhere else, so it opens from a file (or an
e-mail attachment) without a server or a network.

>>> paths = write_reports(Bundle.load("bundle"), report)         # doctest: +SKIP
>>> sorted(p.name for p in paths.values())                        # doctest: +SKIP
['accuracy.html', 'accuracy.json', 'accuracy.md']
"""

from __future__ import annotations

import contextlib
import datetime
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle, write_json_atomic, write_text_atomic
from runtime.files import inside, writer_lock

from .metrics import LOWER_IS_BETTER

REPORT_NAMES = {"json": "accuracy.json", "md": "accuracy.md", "html": "accuracy.html"}
# Colours of the plots, one per variant in turn (readable on white, distinct in grey too).
_PALETTE = ("#1f6fb2", "#d9822b", "#2e9e5b", "#b23b3b", "#7a4fb5", "#8c6d1f", "#2b8c99")
_REFERENCE_COLOUR = "#555555"
# Task metric thresholds for the colour of a summary cell: good, borderline, poor (for the
# metrics of LOWER_IS_BETTER, where 0 is the reference's own result: at most 1 - these).
_GOOD, _FAIR = 0.99, 0.95


# --- formatting ---------------------------------------------------------------------------------
def _num(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _sci(value) -> str:
    if value is None:  # errors are None only where the variant gave NaN or infinity
        return "NaN/∞"
    return "0" if value == 0 else f"{value:.2e}"


def _sqnr(output: Mapping) -> str:
    if output.get("sqnr_db") is None:
        return "∞" if output.get("identical") else "n/a"
    return f"{output['sqnr_db']:.1f}"


def _variant_sqnr(variant: Mapping) -> str:
    if variant["sqnr_db"] is None:
        identical = all(o.get("identical") for o in variant["outputs"].values())
        return "∞" if identical else "n/a"
    return f"{variant['sqnr_db']:.1f}"


def _mb(size) -> str:
    return "n/a" if size is None else f"{size / 1e6:.2f}"


def _speedup(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _latency_unit(report: Mapping) -> str:
    """"ms", or "ms/token" where latency is per generated token (generative bundles)."""
    return "ms/token" if report.get("generation") else "ms"


def _timing_text(report: Mapping) -> str:
    """How the engines were run and timed, in one sentence."""
    runs = report["timing"]["runs_per_sample"]
    generation = report.get("generation")
    if generation:
        return (f"batch 1, {generation['search']} generation of at most "
                f"{generation['max_new_tokens']} new tokens per text, {runs} timed run(s) per "
                "text after a warm-up, engines in turn on each text; latency is per generated "
                "token (a text's generation time over its new tokens)")
    return (f"batch 1, {runs} run(s) per sample after a warm-up, engines in turn on each "
            "sample")


def _layer_parts(layers: Mapping | None) -> list[tuple[str, Mapping]]:
    """(title suffix, per-layer error) of each graph measured: the one graph's, or each part
    of a bundle of several graphs (a merged decoder's branches apart)."""
    if not layers:
        return []
    if "parts" not in layers:
        return [("", layers)]
    return [(f": {part['graph']}" + (f" ({part['branch']} branch)" if part["branch"] else ""),
             part) for part in layers["parts"]]


def _summary_rows(report: Mapping) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-variant summary (reference first)."""
    metric = report["task_metric"]
    unit = _latency_unit(report)
    header = ["variant", "recipe", metric, "cosine", "SQNR dB", f"latency median {unit}",
              f"latency p90 {unit}", "size MB", "speedup", "runs on"]
    ref = report["reference"]
    rows = [[f"{ref['name']} (reference)", "-", "-", "-", "-",
             _num(ref["latency_ms"]["median_ms"], 3), _num(ref["latency_ms"]["p90_ms"], 3),
             _mb(ref.get("bytes")), "1.00x", _reference_runs_on(report)]]
    for name, variant in report["variants"].items():
        recipe = (variant.get("recipe") or {}).get("name", "?")
        rows.append([name, recipe, _num(variant["task"]["value"]), _num(variant["cosine"], 6),
                     _variant_sqnr(variant), _num(variant["latency_ms"]["median_ms"], 3),
                     _num(variant["latency_ms"]["p90_ms"], 3), _mb(variant["bytes"]),
                     _speedup(variant["speedup"]), runs_on(variant.get("measured_on"))])
    return header, rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|",
                      *(line(r) for r in rows)])


def summary_table(report: Mapping) -> str:
    """The per-variant summary as a Markdown table (what `edgeport compare` prints).

    >>> print(summary_table(report).splitlines()[0])              # doctest: +SKIP
    | variant | recipe | top1_agreement | cosine | SQNR dB | ...
    """
    return _md_table(*_summary_rows(report))


def _perplexity_rows(section: Mapping) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the perplexity table: PyTorch (when measured), fp32, the variants;
    where the variants ran elsewhere than ONNX Runtime's CPU, fp32 on ONNX Runtime's CPU first
    (the base of "vs fp32") and each variant named with where it ran."""
    header = ["engine", "perplexity", "NLL nats/token", "vs fp32", "vs pytorch",
              "tokens scored", "windows"]
    rows = []
    if section.get("pytorch"):
        measured = section["pytorch"]
        rows.append(["pytorch", _num(measured["perplexity"], 3), _num(measured["nll_mean"], 5),
                     "-", "-", measured["tokens"], measured["windows"]])
    named = list(section["variants"].items())
    if section.get("reference_fp32"):
        named = [("fp32 (onnxruntime cpu)", section["reference_fp32"]),
                 *((f"{name} ({runs_on(measured.get('measured_on'))})", measured)
                   for name, measured in named)]
    for name, measured in named:
        rows.append([name, _num(measured["perplexity"], 3), _num(measured["nll_mean"], 5),
                     _num(measured["ratio_vs_fp32"]), _num(measured["ratio_vs_pytorch"]),
                     measured["tokens"], measured["windows"]])
    return header, rows


def _perplexity_note(section: Mapping) -> str:
    """What the perplexity was measured on, in one sentence."""
    source = section.get("source") or "the text given"
    note = (f"on {source}: {section['tokens']} tokens ({section['scored']} scored), windows of "
            f"{section['window']} tokens every {section['stride']} ({section['windows']} "
            "windows); exp of the mean negative log-likelihood per token, lower is better; "
            "vs: the ratio of perplexities")
    if section.get("skipped"):
        note += f"; not run there: {', '.join(section['skipped'])}"
    return note


def perplexity_table(report: Mapping) -> str:
    """The perplexity section as a Markdown table (what `edgeport compare --perplexity`
    prints), or "" when the report has none.

    >>> print(perplexity_table(report).splitlines()[0])            # doctest: +SKIP
    | engine | perplexity | NLL nats/token | vs fp32 | vs pytorch | tokens scored | windows |
    """
    section = report.get("perplexity")
    return _md_table(*_perplexity_rows(section)) if section else ""


def _changes(name: str, task: Mapping) -> tuple[str | None, list[str], list[list]]:
    """(title, header, rows) of the samples a report lists for a variant: those whose result
    changed, or (for embeddings, where nothing flips) those with the lowest cosine."""
    changes = task.get("changes") or []
    if task["flips"]:
        title = f"Samples whose result changed ({len(task['flips'])} of {task['count']})"
    elif changes:
        title = task.get("changes_title") or "Samples that changed the most"
    else:
        return None, [], []
    keys = list(changes[0]) if changes else []
    header = [name if key == "variant" else key for key in keys]
    rows = [[_num(c[k], 6) if isinstance(c[k], float) else ("" if c[k] is None else c[k])
             for k in keys] for c in changes]
    return title, header, rows


# --- Markdown -----------------------------------------------------------------------------------
def _task_details(variant: Mapping) -> list[str]:
    task = variant["task"]
    skip = {"metric", "value", "flips", "changes", "changes_title"}
    facts = [f"{k} {_num(v) if isinstance(v, float) else v}" for k, v in task.items()
             if k not in skip and not isinstance(v, (Mapping, list))]
    per_class = task.get("per_class")
    if per_class:  # detection: AP of each class, the worst first
        worst = sorted(per_class.items(), key=lambda item: (item[1], item[0]))[:10]
        facts.append("AP per class " + ", ".join(f"{k} {_num(v)}" for k, v in worst)
                     + (" ..." if len(per_class) > 10 else ""))
    return facts


def markdown_report(report: Mapping) -> str:
    """The whole report as Markdown: summary, per-output errors, changed samples, layers.

    >>> markdown_report(report).startswith("# Accuracy report")   # doctest: +SKIP
    True
    """
    ref = report["reference"]
    data = report["data"]
    lines = [
        f"# Accuracy report: {Path(report['bundle']).name}",
        "",
        f"- bundle: `{report['bundle']}`",
        f"- task: {report['task']} ({report['model_type']})",
        f"- reference: {ref['name']}" + (f" (`{ref['checkpoint']}`)" if ref.get("checkpoint")
                                         else ""),
        f"- data: {data['source']}, {data['samples']} samples, seed {data['seed']}",
        f"- timing: {_timing_text(report)}",
        f"- measured on: {measured_on_text(report)}",
        f"- created: {report['created']}; "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        "Plots (error histograms, per-layer error, accuracy against latency) are in "
        "accuracy.html.",
        "",
        "## Summary",
        "",
        summary_table(report),
    ]
    if report.get("perplexity"):
        lines += ["", "## Perplexity", "", _perplexity_note(report["perplexity"]) + ".", "",
                  perplexity_table(report)]
    for name, variant in report["variants"].items():
        task = variant["task"]
        lines += ["", f"## {name}", "",
                  f"{task['metric']} **{_num(task['value'])}** "
                  f"({', '.join(_task_details(variant))})", ""]
        if quantized_text(variant):
            lines[-1:-1] = ["", quantized_text(variant)]
        rows = [[out, _sci(o["max_abs"]), _sci(o["mean_abs"]), _num(o["cosine_mean"], 6),
                 _num(o["cosine_min"], 6), _sqnr(o)] for out, o in variant["outputs"].items()]
        lines += [_md_table(["output", "max abs", "mean abs", "cosine mean", "cosine min",
                             "SQNR dB"], rows)]
        title, header, rows = _changes(name, task)
        if title:
            lines += ["", f"{title}:", ""]
            if rows:
                lines += [_md_table(header, rows)]
            if task["flips"]:
                more = " ..." if len(task["flips"]) > 50 else ""
                lines += ["", f"All changed samples: {task['flips'][:50]}{more}"]
        elsewhere = (variant.get("measured_on") or {}).get("backend", "onnxruntime") \
            != "onnxruntime"  # the per-layer analysis runs the graph on ONNX Runtime
        for suffix, layers in _layer_parts(variant.get("layers")):
            lines += ["", f"### Where the error enters{suffix} ({layers['tensors_compared']} "
                      f"tensors compared on {layers['samples']} samples"
                      + (", the graph run on ONNX Runtime" if elsewhere else "") + ")", ""]
            if layers["top"]:
                lines += [_md_table(["rank", "node #", "node", "op", "relative error",
                                     "growth"], [
                    [rank, r["index"], f"`{r['name']}`", r["op_type"], _sci(r["error"]),
                     _sci(r["growth"])] for rank, r in enumerate(layers["top"], start=1)])]
            else:
                lines += ["No node adds error: every shared tensor equals fp32's."]
    return "\n".join(lines) + "\n"


# --- SVG ----------------------------------------------------------------------------------------
def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high].

    >>> _nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> _nice_ticks(5.79, 8.59)
    [5.0, 6.0, 7.0, 8.0, 9.0]
    """
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks, value = [round(start, 10)], start
    while value < high - step * 1e-9:  # up to the first tick at or past high: it is covered
        value += step
        ticks.append(round(value, 10))
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:.6g}"


class _Frame:
    """A plot area inside an SVG: maps data coordinates to pixels and draws axes."""

    def __init__(self, width, height, x_range, y_range, *, left=64, right=16, top=16,
                 bottom=44):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0

    def x(self, value: float) -> float:
        span = self.width - self.left - self.right
        return self.left + (value - self.x0) / (self.x1 - self.x0) * span

    def y(self, value: float) -> float:
        span = self.height - self.top - self.bottom
        return self.height - self.bottom - (value - self.y0) / (self.y1 - self.y0) * span

    def axes(self, x_ticks, y_ticks, x_label: str, y_label: str, *, x_format=_tick_label,
             y_format=_tick_label) -> str:
        parts = []
        base = self.height - self.bottom
        for value in y_ticks:
            y = self.y(value)
            parts.append(f'<line class="grid" x1="{self.left}" x2="{self.width - self.right}" '
                         f'y1="{y:.1f}" y2="{y:.1f}"/>')
            parts.append(f'<text class="tick" x="{self.left - 6}" y="{y + 4:.1f}" '
                         f'text-anchor="end">{_esc(y_format(value))}</text>')
        for value in x_ticks:
            x = self.x(value)
            parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" '
                         f'y2="{base + 4}"/>')
            parts.append(f'<text class="tick" x="{x:.1f}" y="{base + 17}" '
                         f'text-anchor="middle">{_esc(x_format(value))}</text>')
        parts.append(f'<line class="axis" x1="{self.left}" x2="{self.width - self.right}" '
                     f'y1="{base}" y2="{base}"/>')
        parts.append(f'<line class="axis" x1="{self.left}" x2="{self.left}" y1="{self.top}" '
                     f'y2="{base}"/>')
        parts.append(f'<text class="label" x="{(self.left + self.width - self.right) / 2:.1f}" '
                     f'y="{self.height - 6}" text-anchor="middle">{_esc(x_label)}</text>')
        middle = (self.top + base) / 2
        parts.append(f'<text class="label" x="14" y="{middle:.1f}" text-anchor="middle" '
                     f'transform="rotate(-90 14 {middle:.1f})">{_esc(y_label)}</text>')
        return "".join(parts)


def _svg(width: int, height: int, title: str, body: str) -> str:
    # No xmlns attribute: inline SVG in HTML needs none, and the page holds no URL at all.
    return (f'<svg class="plot" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_esc(title)}"><title>{_esc(title)}'
            f"</title>{body}</svg>")


def histogram_svg(histogram: Mapping, title: str, colour: str = _PALETTE[0],
                  width: int = 520, height: int = 200) -> str:
    """Bars of abs-error counts over log10 bins, with exact zeros as the first bar.

    >>> histogram_svg({"log10_edges": [-1.0, 0.0, 1.0], "counts": [3, 1], "zeros": 2},
    ...               "x").count("<rect")
    3
    """
    edges = list(histogram["log10_edges"])
    counts = [histogram["zeros"], *histogram["counts"]]
    bins = len(counts)
    y_ticks = _nice_ticks(0.0, max(max(counts), 1), 4)
    frame = _Frame(width, height, (0.0, float(bins)), (0.0, y_ticks[-1]), left=62)
    parts = [frame.axes([], y_ticks, "abs error", "elements", y_format=_count_label)]
    bar = (frame.x(1.0) - frame.x(0.0)) * 0.85
    for i, count in enumerate(counts):
        x = frame.x(float(i)) + (frame.x(1.0) - frame.x(0.0)) * 0.075
        y = frame.y(float(count))
        label = "exact zeros" if i == 0 else f"1e{edges[i - 1]:g} to 1e{edges[i]:g}"
        fill = _REFERENCE_COLOUR if i == 0 else colour
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                     f'height="{max(frame.y(0.0) - y, 0):.1f}" fill="{fill}">'
                     f"<title>{_esc(label)}: {count}</title></rect>")
    base = height - frame.bottom
    parts.append(f'<text class="tick" x="{frame.x(0.5):.1f}" y="{base + 17}" '
                 'text-anchor="middle">0</text>')
    for i, edge in enumerate(edges):
        if float(edge).is_integer() and int(edge) % 2 == 0:  # every other decade
            x = frame.x(float(i + 1))
            parts.append(f'<text class="tick" x="{x:.1f}" y="{base + 17}" '
                         f'text-anchor="middle">1e{int(edge)}</text>')
    return _svg(width, height, title, "".join(parts))


def _count_label(value: float) -> str:
    """Short tick labels for counts.

    >>> [_count_label(v) for v in (0, 500, 1500, 2_000_000)]
    ['0', '500', '1.5k', '2M']
    """
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def layer_svg(layers: Mapping, title: str, colour: str = _PALETTE[0], width: int = 1000,
              height: int = 280, labelled: int = 5) -> str:
    """Relative error of each node's output along the graph (log scale; exact zeros on their
    own row at the bottom), with the nodes that add the most error marked in red and numbered
    by rank (their names show on hover and in the table below the plot).

    >>> layer_svg({"nodes": 3, "profile": [[0, 0.0], [2, 0.1]], "top": [
    ...     {"index": 2, "name": "/a/MatMul", "op_type": "MatMul", "error": 0.1,
    ...      "growth": 0.09}]}, "x").count("<circle")
    3
    """
    profile = layers["profile"]
    nonzero = [e for _, e in profile if e is not None and e > 0]
    high = max(nonzero, default=1.0)
    y_high = math.ceil(math.log10(high))
    y_low = min(math.floor(math.log10(min(nonzero, default=high))), y_high - 1)
    zero_row = y_low - 1  # where exact zeros sit, one decade below the smallest error
    # Non-finite errors (None in the JSON) get a row above the largest finite one.
    bad_row = y_high + 1 if any(e is None for _, e in profile) else None

    def row(error) -> float:
        if error is None:
            return bad_row if bad_row is not None else y_high
        return math.log10(error) if error > 0 else zero_row

    def row_label(value: float) -> str:
        if value == zero_row:
            return "0"
        return "NaN/∞" if value == bad_row else f"1e{value:.0f}"

    frame = _Frame(width, height, (0.0, float(max(layers["nodes"] - 1, 1))),
                   (float(zero_row), float(bad_row if bad_row is not None else y_high)))
    x_ticks = _nice_ticks(0, max(layers["nodes"] - 1, 1), 8)
    y_ticks = list(range(zero_row, (bad_row if bad_row is not None else y_high) + 1))
    parts = [frame.axes(x_ticks, y_ticks, "node (topological order)", "relative error",
                        x_format=lambda v: f"{v:.0f}", y_format=row_label)]
    for index, error in profile:
        parts.append(f'<circle cx="{frame.x(index):.1f}" cy="{frame.y(row(error)):.1f}" '
                     f'r="2.2" fill="{colour}" fill-opacity="0.7"/>')
    placed: list[tuple[float, float]] = []
    for rank, top in enumerate(layers["top"], start=1):
        x, y = frame.x(top["index"]), frame.y(row(top["error"]))
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if rank <= labelled else 3.5}" '
                     f'fill="#b23b3b" fill-opacity="0.85"><title>{rank}. {_esc(top["name"])} '
                     f'({_esc(top["op_type"])}): error {_sci(top["error"])}, growth '
                     f'{_sci(top["growth"])}</title></circle>')
        if rank <= labelled:
            lx, ly = _free_spot(placed, x + 7, y - 7)
            parts.append(f'<text class="note" x="{lx:.1f}" y="{ly:.1f}">{rank}</text>')
    return _svg(width, height, title, "".join(parts))


def _free_spot(placed: list[tuple[float, float]], x: float, y: float,
               step: float = 13.0) -> tuple[float, float]:
    """A label position near (x, y) that does not overlap the labels placed so far (moved
    down a line at a time); it is added to ``placed``."""
    while any(abs(x - px) < 60 and abs(y - py) < step for px, py in placed):
        y += step
    placed.append((x, y))
    return x, y


def scatter_svg(points: Sequence[Mapping], metric: str, width: int = 800,
                height: int = 340, lower_is_better: bool = False,
                latency_unit: str = "ms") -> str:
    """Task metric against median latency, one point per variant (and the reference), with a
    legend beside the plot: variants often sit on top of each other (all at 1.0), where labels
    at the points would overlap.

    >>> scatter_svg([{"name": "int8", "latency": 1.0, "value": 0.98, "colour": "#000"}],
    ...             "top1_agreement").count("<circle")
    2
    """
    legend_width = 230
    xs = [p["latency"] for p in points] or [1.0]
    ys = [p["value"] for p in points if p["value"] is not None] or [1.0]
    low, high = min(xs), max(xs)
    # From zero when the latencies differ a lot (an honest picture of the speedup), zoomed in
    # when they are close together (else every point lands on the same spot).
    if low > 0.5 * high:
        pad = max((high - low) * 0.2, high * 0.02)
        x_ticks = _nice_ticks(low - pad, high + pad, 5)
    else:
        x_ticks = _nice_ticks(0.0, high * 1.1, 5)
    if lower_is_better:  # 0 is the reference's own result: from 0 up to the worst
        y_ticks = _nice_ticks(0.0, max(max(ys) * 1.15, 1e-3), 5)
        y_range = (y_ticks[0], y_ticks[-1])
    else:  # 1.0 is the reference's own result: from below the worst up to 1.0
        y_low = min(ys)
        y_low = min(y_low - max((1.0 - y_low) * 0.15, 0.002), 0.999)
        y_ticks = _nice_ticks(y_low, 1.0, 5)
        y_range = (y_ticks[0], max(y_ticks[-1], 1.0))
    frame = _Frame(width, height, (x_ticks[0], x_ticks[-1]), y_range, left=70,
                   right=legend_width + 16)
    parts = [frame.axes(x_ticks, y_ticks, f"latency median ({latency_unit}, batch 1)", metric,
                        y_format=lambda v: f"{v:.4g}")]
    legend_x = width - legend_width
    for i, p in enumerate(points):
        text = f"{p['name']}: " + ("n/a" if p["value"] is None else f"{p['value']:.4f}") + \
            f", {p['latency']:.3g} {latency_unit}"
        ly = frame.top + 8 + 20 * i
        parts.append(f'<circle cx="{legend_x + 6}" cy="{ly}" r="6" fill="{p["colour"]}"/>')
        parts.append(f'<text class="note" x="{legend_x + 18}" y="{ly + 4}">{_esc(text)}</text>')
        if p["value"] is None:
            continue
        x, y = frame.x(p["latency"]), frame.y(p["value"])
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{p["colour"]}" '
                     f'fill-opacity="0.8" stroke="#fff"><title>{_esc(text)}</title></circle>')
    return _svg(width, height, f"{metric} against latency", "".join(parts))


# --- HTML ---------------------------------------------------------------------------------------
_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0; background: #f6f7f9; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-top: 10px; border-top: 1px solid #e3e5e8; }
h3 { font-size: 16px; margin: 22px 0 8px; }
.meta { color: #5b6068; margin: 0 0 2px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e5e8; text-align: right;
         vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.text, th.text { text-align: left; }
td.name { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px;
          text-align: left; word-break: break-all; }
tr.reference td { color: #5b6068; }
.good { background: #e3f4e8; } .fair { background: #fdf1dc; } .poor { background: #fbe3e3; }
.plots { display: flex; flex-wrap: wrap; gap: 12px 20px; }
figure { margin: 6px 0; }
figcaption { font-size: 13px; color: #5b6068; }
svg.plot { max-width: 100%; height: auto; background: #fff; }
svg .grid { stroke: #e6e8eb; stroke-width: 1; }
svg .axis { stroke: #8a9099; stroke-width: 1; }
svg .tick { font-size: 11px; fill: #5b6068; }
svg .label { font-size: 12px; fill: #33373d; }
svg .note { font-size: 12px; fill: #1d1d1f; }
.muted { color: #5b6068; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
"""


def _cell_class(value, metric: str = "") -> str:
    if value is None:
        return ""
    if metric in LOWER_IS_BETTER:
        return "good" if value <= 1 - _GOOD else "fair" if value <= 1 - _FAIR else "poor"
    return "good" if value >= _GOOD else "fair" if value >= _FAIR else "poor"


def _html_table(header, rows, *, text_columns=(0,), classes=None, row_classes=None) -> str:
    head = "".join(f'<th class="text">{_esc(h)}</th>' if i in text_columns
                   else f"<th>{_esc(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            kind = (classes or {}).get((r, i), "text" if i in text_columns else "")
            cells.append(f'<td class="{kind}">{_esc(cell)}</td>' if kind else
                         f"<td>{_esc(cell)}</td>")
        row_class = (row_classes or {}).get(r)
        attr = f' class="{row_class}"' if row_class else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_report(report: Mapping) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts, no URLs).

    >>> "<svg" in html_report(report)                            # doctest: +SKIP
    True
    """
    ref = report["reference"]
    data = report["data"]
    metric = report["task_metric"]
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(report["variants"])}
    header, rows = _summary_rows(report)
    classes = {}
    for r, variant in enumerate(report["variants"].values(), start=1):
        classes[(r, 2)] = _cell_class(variant["task"]["value"], metric)
        classes[(r, 1)] = "text"
    summary = _html_table(header, rows, text_columns=(0, 1), classes=classes,
                          row_classes={0: "reference"})
    lower = metric in LOWER_IS_BETTER
    points = [{"name": f"{ref['name']} (reference)", "latency": ref["latency_ms"]["median_ms"],
               "value": 0.0 if lower else 1.0, "colour": _REFERENCE_COLOUR}]
    points += [{"name": name, "latency": v["latency_ms"]["median_ms"],
                "value": v["task"]["value"], "colour": colours[name]}
               for name, v in report["variants"].items()]
    title = f"Accuracy report: {Path(report['bundle']).name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">{_esc(report["task"])} &middot; {_esc(report["model_type"])} &middot; '
        f"reference <b>{_esc(ref['name'])}</b>"
        + (f" (<code>{_esc(ref['checkpoint'])}</code>)" if ref.get("checkpoint") else "")
        + "</p>",
        f'<p class="meta">data: {_esc(data["source"])}, {data["samples"]} samples, seed '
        f"{data['seed']} &middot; {_esc(_timing_text(report))}</p>",
        f'<p class="meta">measured on: {_esc(measured_on_text(report))}</p>',
        f'<p class="meta">bundle <code>{_esc(report["bundle"])}</code> &middot; '
        f"{_esc(report['created'])} &middot; "
        + _esc(", ".join(f"{k} {v}" for k, v in report["versions"].items())) + "</p>",
        "<h2>Summary</h2>",
        summary,
        f'<p class="muted">{_esc(metric)} is measured against the reference, which counts as '
        f"the truth ({'0' if lower else '1.0'}: the same result; "
        f"{'lower' if lower else 'higher'} is better). cosine: the worst output's mean cosine "
        "over samples. SQNR: the worst output's signal-to-noise ratio (∞: identical). "
        "speedup: reference median latency over the variant's.</p>",
        "<figure>" + scatter_svg(points, metric, lower_is_better=lower,
                                 latency_unit=_latency_unit(report))
        + f"<figcaption>{_esc(metric)} against median latency per variant</figcaption>"
        "</figure>",
    ]
    if report.get("perplexity"):
        section = report["perplexity"]
        parts += ["<h2>Perplexity</h2>", _html_table(*_perplexity_rows(section)),
                  f'<p class="muted">{_esc(_perplexity_note(section))}.</p>']
    for name, variant in report["variants"].items():
        parts += _variant_html(name, variant, colours[name])
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def quantized_text(variant: Mapping) -> str:
    """What a static-int8 variant runs in int8 and what it leaves float (its recipe's record),
    in words; "" for a recipe that records none.

    >>> quantized_text({"recipe": {"options": {"quantized": {
    ...     "int8": {"MatMul": 36, "Conv": 2}, "float": ["/pooler/dense/Gemm"]}}}})
    'int8: 36 MatMul, 2 Conv; left float: /pooler/dense/Gemm'
    """
    record = ((variant.get("recipe") or {}).get("options") or {}).get("quantized")
    if not isinstance(record, Mapping) or not record.get("int8"):
        return ""
    text = "int8: " + ", ".join(f"{count} {op}" for op, count in record["int8"].items())
    kept = list(record.get("float") or [])
    if kept:
        more = f" and {len(kept) - 10} more" if len(kept) > 10 else ""
        text += f"; left float: {', '.join(kept[:10])}{more}"
    return text


def _variant_html(name: str, variant: Mapping, colour: str) -> list[str]:
    task = variant["task"]
    recipe = variant.get("recipe") or {}
    parts = [f"<h2>{_esc(name)}</h2>",
             f'<p>recipe <b>{_esc(recipe.get("name", "?"))}</b>'
             + (f" <code>{_esc(recipe.get('options'))}</code>" if recipe.get("options") else "")
             + f" &middot; files {_esc(', '.join(variant['files'].values()))} &middot; "
             f"{_mb(variant['bytes'])} MB</p>",
             *([f"<p>{_esc(quantized_text(variant))}</p>"] if quantized_text(variant) else []),
             f'<p>{_esc(task["metric"])} '
             f'<b class="{_cell_class(task["value"], task["metric"])}">'
             f"&nbsp;{_num(task['value'])}&nbsp;</b> ({_esc(', '.join(_task_details(variant)))})"
             "</p>"]
    rows = [[out, _sci(o["max_abs"]), _sci(o["mean_abs"]), _num(o["cosine_mean"], 6),
             _num(o["cosine_min"], 6), _sqnr(o)] for out, o in variant["outputs"].items()]
    parts.append(_html_table(["output", "max abs", "mean abs", "cosine mean", "cosine min",
                              "SQNR dB"], rows))
    figures = [f"<figure>{histogram_svg(o['histogram'], f'{name}: abs error of {out}', colour)}"
               f"<figcaption>abs error of <code>{_esc(out)}</code> over all elements "
               "(log scale bins; grey: exact zeros)</figcaption></figure>"
               for out, o in variant["outputs"].items()]
    parts.append('<div class="plots">' + "".join(figures) + "</div>")
    title, header, rows = _changes(name, task)
    if title:
        parts.append(f"<h3>{_esc(title)}</h3>")
        if rows:
            parts.append(_html_table(header, rows, text_columns=tuple(range(1, len(header)))))
        if task["flips"]:
            more = " ..." if len(task["flips"]) > 50 else ""
            parts.append(f'<p class="muted">all changed samples: '
                         f"{_esc(task['flips'][:50])}{more}</p>")
    for suffix, layers in _layer_parts(variant.get("layers")):
        parts.append(f"<h3>Where the error enters{_esc(suffix)}</h3><p class=\"muted\">relative "
                     f"error (‖variant − fp32‖ / ‖fp32‖) of {layers['tensors_compared']} "
                     f"tensors shared with fp32, on {layers['samples']} samples; growth = a "
                     "node's error minus the largest error of its inputs.</p>")
        parts.append("<figure>" + layer_svg(layers, f"{name}: per-layer error{suffix}", colour)
                     + "<figcaption>red: the nodes that add the most error (hover for names)"
                     "</figcaption></figure>")
        if layers["top"]:
            parts.append(_html_table(["rank", "node #", "node", "op", "relative error",
                                      "growth"], [
                [rank, r["index"], r["name"], r["op_type"], _sci(r["error"]), _sci(r["growth"])]
                for rank, r in enumerate(layers["top"], start=1)], text_columns=(2, 3),
                classes={(i, 2): "name" for i in range(len(layers["top"]))}))
        else:
            parts.append("<p>No node adds error: every shared tensor equals fp32's.</p>")
    return parts


# --- the report's parts, made by compare and compare_generation ----------------------------------
REPORT_SCHEMA = 1


def report_header(bundle: Bundle, reference: str, latency: dict) -> dict:
    """What every accuracy report starts with: schema, bundle, task, time, the reference."""
    return {
        "schema_version": REPORT_SCHEMA,
        "bundle": str(bundle.path),
        "task": bundle.task,
        "model_type": bundle.model_type,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "reference": {
            "name": reference,
            "latency_ms": latency,
            "bytes": variant_bytes(bundle, "fp32") if reference == "fp32" else None,
            "checkpoint": (bundle.manifest.get("source") or {}).get("checkpoint")
            if reference == "pytorch" else None,
        },
    }


def variant_header(bundle: Bundle, name: str, latency: dict, reference_latency: dict) -> dict:
    """What every report says of a variant first: its recipe, files, size, latency, speed-up."""
    return {
        "recipe": bundle.variants[name].get("recipe"),
        "files": dict(bundle.variants[name]["files"]),
        "bytes": variant_bytes(bundle, name),
        "latency_ms": latency,
        "speedup": reference_latency["median_ms"] / latency["median_ms"]
        if latency["median_ms"] > 0 else None,
    }


def variant_bytes(bundle: Bundle, name: str) -> int:
    """The size on disk of a variant's graph files (with their external weights)."""
    info = bundle.variants[name]
    files = list(info["files"].values())
    for extra in info.get("data_files", {}).values():
        files += extra
    return sum(bundle.file(f, what=f"variants.{name}").stat().st_size for f in files)


def versions(backend: str = "onnxruntime") -> dict:
    """edgeport's, ONNX Runtime's and numpy's versions, and the variants' ``backend``'s where
    it is another (OpenVINO's)."""
    import onnxruntime

    from runtime.version import __version__

    found = {"edgeport": __version__, "onnxruntime": onnxruntime.__version__,
             "numpy": np.__version__}
    if backend == "openvino":
        from runtime.backends.openvino.libs import import_openvino, openvino_version

        found["openvino"] = openvino_version(import_openvino())
    return found


def runs_on(where: Mapping | None) -> str:
    """Where a variant ran, in a few words (a report's ``measured_on``).

    >>> runs_on({"backend": "openvino", "device": "cpu", "precision": "bf16",
    ...          "precision_default": True})
    'openvino cpu bf16 (default)'
    >>> runs_on({"backend": "onnxruntime", "device": "cpu", "precision": None})
    'onnxruntime cpu'
    >>> runs_on(None)
    'onnxruntime cpu'
    """
    where = where or {"backend": "onnxruntime", "device": "cpu"}
    text = f"{where['backend']} {where['device']}"
    if where.get("precision"):
        text += f" {where['precision']}" + (" (default)" if where.get("precision_default")
                                            else "")
    return text


def _reference_runs_on(report: Mapping) -> str:
    return "pytorch cpu" if report["reference"]["name"] == "pytorch" else "onnxruntime cpu"


def measured_on_text(report: Mapping) -> str:
    """Where the reference and the variants ran, in one sentence."""
    variants = [runs_on(v.get("measured_on")) for v in report["variants"].values()]
    text = (f"reference on {_reference_runs_on(report)}; variants on "
            f"{', '.join(dict.fromkeys(variants)) or '-'}")
    where = next((v.get("measured_on") for v in report["variants"].values()
                  if (v.get("measured_on") or {}).get("device_name")), None)
    if where:
        text += f" ({where['device_name']})"
    if report.get("skipped"):
        text += f"; not run there: {', '.join(report['skipped'])}"
    return text


def json_ready(value):
    """The report with NaN and infinities as None (JSON has neither): a variant whose graph
    overflows gives NaN outputs, and the report must still be written.

    >>> json_ready({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


# --- writing ------------------------------------------------------------------------------------
def write_reports(bundle: Bundle | str | os.PathLike, report: Mapping,
                  directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write reports/accuracy.json, .md and .html into the bundle (or into ``directory``, which
    leaves the bundle untouched: a bundle read from a read-only place), each atomically;
    returns {"json": path, "md": path, "html": path}.

    >>> write_reports(bundle, report)["html"].name               # doctest: +SKIP
    'accuracy.html'
    """
    root = bundle.path if isinstance(bundle, Bundle) else Path(bundle)
    # Render everything first: a rendering error then leaves the old reports untouched.
    markdown, page = markdown_report(report), html_report(report)
    if directory is not None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock = contextlib.nullcontext()
    else:
        lock = writer_lock(root)
    with lock:
        if directory is None:  # a reports/ that is a symlink out of the bundle is refused
            directory = inside(root, "reports", what="The bundle's reports folder",
                               directory=True)
            directory.mkdir(exist_ok=True)
        paths = {kind: directory / name for kind, name in REPORT_NAMES.items()}
        write_json_atomic(paths["json"], report)
        write_text_atomic(paths["md"], markdown)
        write_text_atomic(paths["html"], page)
    return paths
