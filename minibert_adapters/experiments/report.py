"""`minibert experiments report --out DIR`: RESULTS.md and the figures, from the run folders that exist.

Model selection as Houlsby2019 §3.2: for each task and method, the (learning rate, epochs) whose mean final
dev metric over seeds is best. There is no separate test set here (GLUE's test labels are private; SST-2
sentences uses its dev set as the benchmark), so the selected number is optimistic: it is chosen and
reported on the same data. The report says how many seeds each number averages and which runs are missing.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from minibert_adapters.experiments.grid import COMMAND, DONE, cells, load_grid, run_status
from minibert_adapters.training.checkpoints import HISTORY, read_json, write_or_clean_up
from minibert_adapters.training.data import TASKS

METRIC_NAMES = {"accuracy": "accuracy", "matthews": "MCC"}


def collect_runs(out: Path) -> list:
    """One dict per run folder under out/runs (complete or not): its settings, results and command."""
    runs = []
    for history in sorted((out / "runs").glob(f"*/*/*/{HISTORY}")):
        folder = history.parent
        try:
            record = read_json(history, "run history")
        except ValueError:
            continue
        s = record.get("settings") or {}
        task = TASKS.get(s.get("task"))
        if task is None:
            continue
        per_epoch = math.ceil(s["n_train"] / s["batch_size"])
        rows = record.get("history") or []
        seconds = rows[-1]["seconds"] if rows else None
        done = record.get("step", 0)
        command = (folder / COMMAND).read_text(encoding="utf-8").strip() if (folder / COMMAND).is_file() else None
        runs.append({
            "folder": folder, "task": s["task"], "method": folder.parent.name, "mode": s["mode"],
            "family": family(s),
            "lr": s["lr"], "seed": s["seed"], "epochs": s.get("epochs") or s["steps"] / per_epoch,
            "init_std": s.get("init_std"), "size": s.get("size"), "status": run_status(folder),
            "steps": s["steps"], "step": done, "metric": task.metric,
            "final": (record.get("final") or {}).get(task.metric),
            "by_epoch": [r["dev"][task.metric] for r in rows if "dev" in r and r["step"] % per_epoch == 0],
            "seconds_per_epoch": seconds / (done / per_epoch) if seconds and done else None,
            "trainable": s.get("trainable_parameters"),
            "pretrained": s.get("pretrained_parameters") or _pretrained_parameters(s.get("model")),
            "command": command})
    return runs


def family(settings: dict) -> str:
    """What a run trains, for the figures: its mode, or for mode adapter the preset's kind (bottleneck, lora, ...)."""
    if settings["mode"] != "adapter":
        return settings["mode"]
    from adapters import kind_of, preset_config

    return kind_of(preset_config(settings.get("preset") or "houlsby")).name


_COUNTS = {}


def _pretrained_parameters(model) -> int:
    """The pretrained model's parameter count, for runs saved before their history recorded it."""
    if model not in _COUNTS:
        from minibert import BertModel
        from minibert.config import BertConfig
        from minibert.pretrained import resolve_model_dir

        bert = BertModel(BertConfig.from_json_file(resolve_model_dir(model) / "config.json"))
        _COUNTS[model] = sum(p.size for n, p in bert.named_parameters() if n in bert.checkpoint_names)
    return _COUNTS[model]


def mean_sem(values) -> tuple:
    values = np.asarray(values, dtype=np.float64)
    sem = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return float(values.mean()), sem


def select_best(runs: list) -> dict:
    """{(task, method): the best cell}. Cells (lr, epochs) compete on the seeds they share, so a cell run with
    one lucky seed cannot beat one run with three on its mean; ties go to more seeds. The runner goes round the
    cells seed by seed (seed 0 of every cell, then seed 1, ...), so at any time the cells of a method are at
    most one seed apart; a cell two or more seeds behind the best-covered one (run out of turn) waits until it
    catches up: compared, it would shrink the shared seeds of every other cell to its one or two. The row then
    reports the chosen cell's mean ± s.e.m. over all its seeds, and how many cells were tried and waiting.
    Runs with an explicit init std are the init-std curve's (`init_std_series`), not methods of the comparison.

    Convention: paired selection on the seeds shared by the cells at most one seed behind the best-covered
    one (with none in common, each cell's own mean)."""
    cells_ = {}
    for r in runs:
        if r["status"] == "complete" and r["final"] is not None and r["init_std"] is None:
            cells_.setdefault((r["task"], r["method"], r["lr"], r["epochs"]), []).append(r)
    by_method = {}
    for (task, method, lr, epochs), group in cells_.items():
        by_method.setdefault((task, method), []).append((lr, epochs, group))
    best = {}
    for (task, method), candidates in by_method.items():
        most = max(len(group) for _, _, group in candidates)
        compared = [c for c in candidates if len(c[2]) >= most - 1]
        common = set.intersection(*({r["seed"] for r in group} for _, _, group in compared))
        lr, epochs, group = max(compared, key=lambda candidate: _paired_score(candidate[2], common))
        mean, sem = mean_sem([r["final"] for r in group])
        # Houlsby2019 §3.2 keeps the best of its seeds (on dev); reported beside the mean, never instead of it.
        best_seed = max(group, key=lambda r: r["final"])
        best[(task, method)] = {"task": task, "method": method, "lr": lr, "epochs": epochs, "mean": mean,
                                "sem": sem, "n": len(group), "runs": sorted(group, key=lambda r: r["seed"]),
                                "tried": len(candidates), "waiting": len(candidates) - len(compared),
                                "best_of_seeds": best_seed["final"], "best_seed": best_seed["seed"]}
    return best


def _paired_score(group: list, common: set) -> tuple:
    """A cell's score for selection: its mean over the common seeds (all its seeds if none), then its n."""
    paired = [r["final"] for r in group if r["seed"] in common] if common else [r["final"] for r in group]
    return float(np.mean(paired)), len(group)


def init_std_series(runs: list) -> dict:
    """{(task, size, lr, epochs): {init std: [final metric of each complete seed]}} (Houlsby2019 Fig. 6 right)."""
    series = {}
    for r in runs:
        if r["init_std"] is not None and r["status"] == "complete" and r["final"] is not None:
            series.setdefault((r["task"], r["size"], r["lr"], r["epochs"]), {}).setdefault(r["init_std"], []).append(
                r["final"])
    return series


def summary_table(results: list) -> list:
    """The comparison at a glance, from results.json's cells: one row per method (most trained parameters
    first), one column per task, each the best-lr dev metric as mean ± s.e.m. (n seeds). A cell whose best
    schedule is not the most common one says its epochs."""
    tasks = [t for t in TASKS if any(c["task"] == t for c in results)]
    schedules = [c["epochs"] for c in results]
    usual = max(set(schedules), key=schedules.count) if schedules else None
    methods = {}
    for c in results:
        methods.setdefault(c["method"], c)
    lines = ["| method | trained parameters | " + " | ".join(
                 f"{t} ({METRIC_NAMES[TASKS[t].metric]})" for t in tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for method, c0 in sorted(methods.items(), key=lambda item: (-item[1]["trainable"], item[0])):
        share = f" ({_percent(100 * c0['trainable'] / c0['pretrained'])}%)" if c0.get("pretrained") else ""
        by_task = {c["task"]: c for c in results if c["method"] == method}
        row = []
        for t in tasks:
            c = by_task.get(t)
            if c is None:
                row.append("-")
                continue
            epochs = f", {c['epochs']:g} epochs" if c["epochs"] != usual else ""
            best = f"; best {100 * c['best_of_seeds']:.1f}" if c["n"] > 1 and "best_of_seeds" in c else ""
            row.append(f"{_pm(c['mean'], c['sem'])} (n={c['n']}{best}{epochs})")
        lines.append(f"| {method} | {c0['trainable']:,}{share} | " + " | ".join(row) + " |")
    return lines


def paired_gaps(best: dict, reference: str = "full") -> list:
    """Markdown lines: for each task and method, method - `reference` on the seeds both chosen cells have (mean ±
    s.e.m. of the per-seed differences, n), the comparison the claims are about."""
    lines = []
    for task in [t for t in TASKS if (t, reference) in best]:
        ref = {r["seed"]: r["final"] for r in best[(task, reference)]["runs"]}
        for (t, method), c in sorted(best.items(), key=lambda item: item[0][1]):
            if t != task or method == reference:
                continue
            diffs = [r["final"] - ref[r["seed"]] for r in c["runs"] if r["seed"] in ref]
            if diffs:
                mean, sem = mean_sem(diffs)
                lines.append(f"| {task} | {method} | {_pm(mean, sem)} | {len(diffs)} |")
    if not lines:
        return []
    return [f"| task | method | {'method'} - {reference} (x100) | seeds paired |", "|---|---|---|---|", *lines]


def missing_runs(out: Path) -> list:
    """(grid file, number of its runs not complete, their folders) for each grid run into `out`."""
    result = []
    for grid_file in sorted((out / "grids").glob("*.json")):
        todo = [c for c in cells(load_grid(grid_file)) if run_status(out / c.folder) not in DONE]
        result.append((grid_file.name, len(cells(load_grid(grid_file))), todo))
    return result


def _percent(value: float) -> str:
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"  # the head alone is 0.003%, not "0.00"


def _pm(mean, sem, scale=100.0) -> str:
    return f"{scale * mean:.1f}" + (f" ± {scale * sem:.1f}" if sem is not None else "")


def write_report(out, figures: bool = True) -> list:
    """Write out/RESULTS.md (and the figures when matplotlib is there); the paths written."""
    out = Path(out)
    runs = collect_runs(out)
    if not runs:
        raise ValueError(f"{out}: no run folders under {out / 'runs'} (run `minibert experiments run` first)")
    best = select_best(runs)
    missing = missing_runs(out)
    complete = sum(r["status"] == "complete" for r in runs)
    gone = sum(r["status"] == "diverged" for r in runs)  # finished without a result: never rerun, never selected
    lines = ["# Results: Houlsby adapters vs fine-tuning on all-MiniLM-L6-v2", "",
             f"Generated by `minibert experiments report --out {out}` from the run folders in `{out}/runs`.",
             f"**{'Partial' if any(m[2] for m in missing) or complete + gone < len(runs) else 'Complete'}:** "
             f"{complete} complete runs, "
             + (f"{gone} diverged (a non-finite loss; see the status column), " if gone else "")
             + f"{len(runs) - complete - gone} not complete (stopped or running; resumable)."]
    for name, total, todo in missing:
        lines.append(f"- grid `{name}`: {total - len(todo)} of {total} runs complete{' or diverged' if gone else ''}")
    lines += ["", "Dev metric: the task's (accuracy; Matthews correlation for CoLA), x100, after the last epoch; "
              "mean ± s.e.m. over the seeds run (n). The learning rate and epochs of each row are the best on "
              "dev among those run for that method (Houlsby2019 §3.2), compared on the seeds they share (a cell two "
              "or more seeds behind the best-covered one waits until it catches up); with no separate test set "
              "this is optimistic. \"cells tried\" counts the (lr, epochs) cells with at least one complete run, "
              "with those waiting in brackets. \"wall s / "
              "epoch\" is each run's own wall-clock time, on a machine whose load varied between runs. An MCC of "
              "0.0 is a classifier that predicts one class only.", ""]
    summary = _results_json(best)
    lines += ["## Summary", "", *summary_table(summary), "",
              "Each cell: the best (lr, epochs) on dev for that method and task, mean ± s.e.m. over its seeds (n) and, "
              "with more than one seed, the best of them (the paper's selection, Houlsby2019 §3.2: optimistic); the "
              "tables below give the cells.", ""]
    gaps = paired_gaps(best)
    if gaps:
        lines += ["## Paired gaps to full fine-tuning", "",
                  "Each method's chosen cell minus full fine-tuning's, seed by seed, on the seeds both have.", "",
                  *gaps, ""]
    points = {}
    for task in [t for t in TASKS if any(k[0] == t for k in best)]:
        metric = TASKS[task].metric
        lines += [f"## {task}", "", f"| method | trained parameters | % of the model | dev {METRIC_NAMES[metric]} "
                  "(n) | epochs | lr | cells tried | wall s / epoch | command (seed 0 or first seed) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        rows = sorted((c for k, c in best.items() if k[0] == task), key=lambda c: -c["mean"])
        for c in rows:
            r0 = c["runs"][0]
            share = f"{_percent(100 * r0['trainable'] / r0['pretrained'])}%" if r0["pretrained"] else "?"
            per_epoch = [r["seconds_per_epoch"] for r in c["runs"] if r["seconds_per_epoch"]]
            tried = f"{c['tried']} ({c['waiting']} waiting)" if c.get("waiting") else c["tried"]
            lines.append(f"| {c['method']} | {r0['trainable']:,} | {share} | {_pm(c['mean'], c['sem'])} ({c['n']}) "
                         f"| {c['epochs']:g} | {c['lr']:g} | {tried} | {np.mean(per_epoch):.0f} | "
                         f"`{r0['command']}` |")
            points.setdefault(task, []).append((c["method"], r0["family"], r0["trainable"], c["mean"], c["sem"],
                                                c["n"]))
        lines.append("")
    series = init_std_series(runs)
    for (task, size, lr, epochs), by_std in sorted(series.items()):
        lines += [f"## Init std (Figure 6 right): {task}, m = {size}, lr {lr:g}, {epochs:g} epoch"
                  f"{'' if epochs == 1 else 's'}", "",
                  f"| init std | dev {METRIC_NAMES[TASKS[task].metric]} (n) | per seed |", "|---|---|---|"]
        for std, values in sorted(by_std.items()):
            lines.append(f"| {std:g} | {_pm(*mean_sem(values))} ({len(values)}) | "
                         + ", ".join(f"{100 * v:.1f}" for v in values) + " |")
        lines.append("")
    lines += ["## Every run", "", "| task | method | lr | epochs | seed | status | steps | dev after each epoch | "
              "final | wall s / epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["task"], r["method"], r["lr"], r["epochs"], r["seed"])):
        by_epoch = " / ".join(f"{100 * v:.1f}" for v in r["by_epoch"]) or "-"
        final = f"{100 * r['final']:.1f}" if r["final"] is not None else "-"
        spe = f"{r['seconds_per_epoch']:.0f}" if r["seconds_per_epoch"] else "-"
        lines.append(f"| {r['task']} | {r['method']} | {r['lr']:g} | {r['epochs']:g} | {r['seed']} | {r['status']} "
                     f"| {r['step']}/{r['steps']} | {by_epoch} | {final} | {spe} |")
    written = []
    lines += ["", "## Figures", ""]
    from minibert_adapters.experiments.figures import have_matplotlib

    if figures and have_matplotlib():
        written += _figures(out, series, points, lines)
    else:
        reason = "`--no-figures`" if not figures else \
            "matplotlib is not installed; pip install 'minibert-adapters[figures]'"
        lines += _kept_figures(out, reason)
    lines += ["", "## Runs still to do", ""]
    for name, total, todo in missing:
        lines.append(f"- `{name}`: {len(todo)} of {total} runs to do" + (
            "; continue with `minibert experiments run --grid experiments/" + name + f" --out {out}`" if todo else ""))
        for c in todo[:12]:
            lines.append(f"  - {c.folder}")
        if len(todo) > 12:
            lines.append(f"  - ... and {len(todo) - 12} more")
    lines += ["", "## Commands of every run", "", "Each run folder keeps its command in `command.txt`, its settings "
              "and every step in `history.json`, and its console output in `train.log`.", "", "```"]
    lines += [r["command"] for r in sorted(runs, key=lambda r: str(r["folder"])) if r["command"]] + ["```", ""]
    path = out / "RESULTS.md"
    # Replaced whole or not at all: a full disk keeps the previous report rather than half of the new one.
    write_or_clean_up(path, lambda tmp: tmp.write_text("\n".join(lines), encoding="utf-8"))
    write_or_clean_up(out / "results.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n",
                                                                        encoding="utf-8"))
    return [path, out / "results.json", *written]


def _results_json(best: dict) -> list:
    """The best cells as results.json holds them: no run folders, the seeds and parameter counts instead."""
    return [{k: v for k, v in c.items() if k != "runs"} | {"seeds": [r["seed"] for r in c["runs"]],
                                                          "mode": c["runs"][0]["mode"],
                                                          "family": c["runs"][0]["family"],
                                                          "trainable": c["runs"][0]["trainable"],
                                                          "pretrained": c["runs"][0]["pretrained"]}
            for c in best.values()]


KEPT_NOTE = "(not redrawn: {reason}. The figures below are the previous report's, drawn from the runs there were then.)"


def _kept_figures(out: Path, reason: str) -> list:
    """The Figures section's lines when none are drawn: the previous RESULTS.md's figures whose image files are
    still there, under a note saying so, because a report rewritten without matplotlib (or with --no-figures)
    would otherwise drop the figures of a committed RESULTS.md; else one line saying why there are none."""
    previous = out / "RESULTS.md"
    text = previous.read_text(encoding="utf-8") if previous.is_file() else ""
    section = text.partition("\n## Figures\n")[2].partition("\n## ")[0]
    blocks = []
    for block in section.strip().split("\n\n"):  # one figure: its image line and its caption
        images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", block)
        if images and all((out / image).is_file() for image in images):
            blocks.append(block.strip("\n"))
    if not blocks:
        return [f"(not drawn: {reason})"]
    return [KEPT_NOTE.format(reason=reason), "", "\n\n".join(blocks)]


def _figures(out: Path, series: dict, points: dict, lines: list) -> list:
    from minibert_adapters.experiments import figures
    from minibert_adapters.experiments.ablation import is_complete

    written, first_line = [], len(lines)
    if points:
        path = figures.params_vs_metric(points, out / "params_vs_metric.png",
                                        {t: METRIC_NAMES[TASKS[t].metric] for t in points})
        written.append(path)
        lines.append(f"![dev metric against trained parameters]({path.name})  \n*Figure 3/4 style: best-lr dev "
                     "metric (mean ± s.e.m. over seeds) against trained parameters, log axis.*")
    if series:
        curves = {f"{task}, m={size}, lr {lr:g}, {epochs:g} ep": [(std, *mean_sem(v)) for std, v in by_std.items()]
                  for (task, size, lr, epochs), by_std in series.items()}
        metrics = {METRIC_NAMES[TASKS[task].metric] for task, *_ in series}
        path = figures.init_std_curve(curves, out / "init_std.png", metrics.pop() if len(metrics) == 1 else "metric")
        written.append(path)
        lines.append(f"\n![dev metric against init std]({path.name})  \n*Figure 6 right: dev metric against the "
                     "adapters' init std.*")
    for ablation in sorted(out.glob("ablation/*/ablation.json")):
        result = read_json(ablation, "ablation result")
        if not is_complete(result):  # an `ablate` that stopped part-way: its spans so far, no full heatmap
            lines.append(f"\n(ablation {ablation.parent.name}: partial, {len(result['spans'])} spans scored; not "
                         "drawn: run `minibert ablate` again)")
            continue
        png = ablation.with_suffix(".png")
        if not png.is_file():
            figures.ablation_heatmap(result, png)
            written.append(png)
        rel = png.relative_to(out)
        worst = max(result["spans"], key=lambda s: s["drop"] if s["first"] == s["last"] else -1)
        lines.append(f"\n![ablation heatmap]({rel})  \n*Figure 6 left/centre: drop in dev {result['metric']} when "
                     f"the adapters of a span of layers are removed ({ablation.parent.name}); the largest single-layer "
                     f"drop is {100 * worst['drop']:.1f} points (layer {worst['first']}); all removed: "
                     f"{100 * result['spans'][result['layers'] - 1]['drop']:.1f}.*")
    if len(lines) == first_line:
        lines.append("(none yet: no complete run)")
    return written
