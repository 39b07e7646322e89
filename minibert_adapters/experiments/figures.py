"""The paper's figures as PNG files, with matplotlib (an optional extra: pip install 'minibert-adapters[figures]').

- `params_vs_metric`: dev metric against trained parameters on a log axis, one panel per task (Fig. 3 / 4).
- `ablation_heatmap`: the drop when an adapter is removed from a span of layers (Fig. 6 left / centre).
- `init_std_curve`: dev metric against the adapters' init std (Fig. 6 right).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def ablation_heatmap(result: dict, path: Path) -> Path:
    """Rows: first removed layer; columns: last removed layer; colour and text: the drop in points."""
    import numpy as np

    plt = _pyplot()
    n = result["layers"]
    grid = np.full((n, n), np.nan)
    for s in result["spans"]:
        grid[s["first"], s["last"]] = 100 * s["drop"]
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    vmax = max(1.0, float(np.nanmax(grid)))
    image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=vmax)
    for s in result["spans"]:
        # white text on the darker half of the colour scale, black on the lighter: readable on every cell
        dark = 100 * s["drop"] > 0.55 * vmax
        ax.text(s["last"], s["first"], f"{100 * s['drop']:.1f}", ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_xlabel("last layer with the adapter removed")
    ax.set_ylabel("first layer with the adapter removed")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    metric = result.get("metric", "score")
    ax.set_title(f"drop in dev {metric} (points; all adapters: {100 * result['baseline']:.1f})", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"drop in dev {metric} (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# Colour and marker by family (report.family): the baselines by mode, the adapter kinds in their registration order.
BASELINE_STYLES = {"full": ("black", "s"), "top-k": ("C1", "^"), "layernorm": ("C2", "^"), "head": ("C3", "^")}
KIND_STYLES = [("C0", "o"), ("C5", "v"), ("C4", "D"), ("C6", "P"), ("C7", "X"), ("C8", "*")]


def style(family: str) -> tuple:
    """(colour, marker) of a family of runs."""
    if family in BASELINE_STYLES:
        return BASELINE_STYLES[family]
    from adapters import KINDS

    kinds = list(KINDS)
    return KIND_STYLES[(kinds.index(family) if family in kinds else len(kinds)) % len(KIND_STYLES)]


def params_vs_metric(points: dict, path: Path, metric_names: dict) -> Path:
    """points: {task: [(method, family, trained parameters, mean, sem, n seeds)]}; one panel per task, log x axis.

    Colour and marker by family (`style`): each adapter kind its own, full fine-tuning a black square (and a
    dashed line), the other baselines up-triangles. Filled: a mean over 2 or more
    seeds (with its s.e.m. bar); hollow: one seed. One legend for the figure, below the panels."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    tasks = list(points)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 4.2), squeeze=False)
    families, labels = [], []
    for ax, task in zip(axes[0], tasks):
        ordered = sorted(points[task], key=lambda p: p[2])
        for method, family, params, mean, sem, n in ordered:
            colour, marker = style(family)
            ax.errorbar(params, 100 * mean, yerr=100 * sem if sem else None, fmt=marker, capsize=3,
                        color=colour, markerfacecolor=colour if n > 1 else "white", markeredgewidth=1.3)
            labels.append((ax, method, params, 100 * mean))
            if family not in families:
                families.append(family)
        for _, family, _, mean, _, _ in points[task]:
            if family == "full":  # the reference the paper's Figure 3 measures everything against
                ax.axhline(100 * mean, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("trained parameters (log)")
        ax.set_ylabel(f"dev {metric_names.get(task, 'metric')} (x100)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker=style(f)[1], color=style(f)[0], label=f) for f in families]
    handles += [Line2D([], [], linestyle="", marker="o", color="grey", label="mean of 2+ seeds (± s.e.m.)"),
                Line2D([], [], linestyle="", marker="o", color="grey", markerfacecolor="white", label="one seed")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False,
               title="what trains", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    place_labels(fig, labels)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# Where a label may go around its point, in points (dx, dy, horizontal alignment), nearest first.
LABEL_OFFSETS = [(dx * k, dy * k, ha) for k in (1, 2, 3) for dx, dy, ha in
                 [(5, 4, "left"), (5, -10, "left"), (-5, 4, "right"), (-5, -10, "right"), (0, 8, "center"),
                  (0, -15, "center"), (7, -3, "left"), (-7, -3, "right")]]


def place_labels(fig, labels: list, fontsize: int = 7) -> None:
    """Label each point [(ax, text, x, y)] where its text overlaps no other label, no point and stays inside its
    axes: the first free place of LABEL_OFFSETS, else the one overlapping least (a greedy placement, in the order
    given; deterministic)."""
    renderer = fig.canvas.get_renderer()
    taken = {}  # ax -> [bounding boxes of the labels placed and of the points]
    for ax, _, x, y in labels:
        px, py = ax.transData.transform((x, y))
        taken.setdefault(ax, []).append((px - 4, py - 4, px + 4, py + 4))

    def overlap(a, b):
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    for ax, text, x, y in labels:
        frame = ax.get_window_extent(renderer)
        best = None
        for dx, dy, ha in LABEL_OFFSETS:
            t = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=fontsize)
            e = t.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
            outside = (e.x0 < frame.x0) or (e.x1 > frame.x1) or (e.y0 < frame.y0) or (e.y1 > frame.y1)
            cost = sum(overlap(box, other) for other in taken[ax]) + (1e6 if outside else 0.0)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, t, box)
            else:
                t.remove()
            if cost == 0:
                break
        taken[ax].append(best[2])


def init_std_curve(series: dict, path: Path, metric: str) -> Path:
    """series: {label: [(init std, mean, sem)]}; log x axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, rows in series.items():
        rows = sorted(rows)
        ax.errorbar([r[0] for r in rows], [100 * r[1] for r in rows], yerr=[100 * (r[2] or 0) for r in rows],
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("init std of the adapter weights (log)")
    ax.set_ylabel(f"dev {metric} (x100)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
