"""The `minibert experiments` command: `run` a grid (minibert_adapters.experiments.grid), `report` it
(minibert_adapters.experiments.report)."""

from __future__ import annotations

from pathlib import Path

from minibert_adapters.commands.arguments import (
    EXIT_CODES,
    non_negative_int,
    output_that_outlives_its_reader,
    positive_float,
    positive_int,
    writable_folder,
)
from minibert_adapters.experiments import grid as experiments
from minibert_adapters.experiments.report import write_report


def register(sub):
    p = sub.add_parser("experiments", help="run a grid of fine-tuning runs (resumable) and report it",
                       description=experiments.__doc__.split("\n\n")[0], epilog=EXIT_CODES)
    what = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = what.add_parser("run", help="run or resume every run of a grid not yet complete",
                        description="Run the grid's runs in order of value (seed 0 and each method's first lr "
                                    "first), skipping complete ones and resuming stopped ones.", epilog=EXIT_CODES)
    r.add_argument("--grid", required=True, help="the grid file (experiments/*.json)")
    r.add_argument("--out", required=True, help="the results folder (runs go to OUT/runs/TASK/METHOD/...)")
    r.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="stop cleanly (the running run saved, resumable) after about this many seconds")
    r.add_argument("--task", action="append", help="only this task (repeatable)")
    r.add_argument("--method", action="append", help="only this method name (repeatable)")
    r.add_argument("--seed", type=non_negative_int, action="append", help="only this seed (repeatable)")
    r.add_argument("--first-lrs", type=positive_int, metavar="K",
                   help="only each method's first K learning rates (the grid lists the expected best first)")
    r.add_argument("--lr", type=positive_float, action="append", help="only this learning rate (repeatable)")
    r.add_argument("--epochs", type=positive_int, action="append", help="only this number of epochs (repeatable)")
    r.add_argument("--dry-run", action="store_true",
                   help="list the runs in the order they would start, each with its status, and start nothing")
    r.add_argument("--threads", type=positive_int,
                   help="BLAS threads per run (default: the environment's); 1 is much faster on a busy machine")
    r.add_argument("--jobs", type=positive_int, default=1,
                   help="runs at the same time (default 1); with --threads 1, one per core")
    r.add_argument("--data", help="data folder (default $MINIBERT_DATA, else ../shared/data)")
    r.set_defaults(func=_cmd_run)
    r = what.add_parser("report", help="write RESULTS.md and the figures from the runs that exist",
                        description="Table (best lr per method on dev, mean ± s.e.m. over seeds), every run, the "
                                    "runs still to do, and the figures (with matplotlib).", epilog=EXIT_CODES)
    r.add_argument("--out", required=True, help="the results folder given to `experiments run`")
    r.add_argument("--no-figures", action="store_true", help="only RESULTS.md and results.json")
    r.set_defaults(func=_cmd_report)


def _cmd_run(args) -> int:
    # A closed terminal must not end the grid mid-run: its runs save on SIGHUP and their logs keep everything.
    with output_that_outlives_its_reader():
        return experiments.run_grid(args.grid, args.out, args.time_limit, args.data, args.task, args.method,
                                    args.seed, args.first_lrs, args.threads, jobs=args.jobs, lrs=args.lr,
                                    epochs=args.epochs, dry_run=args.dry_run)


def _cmd_report(args) -> int:
    out = Path(args.out)
    if not out.is_dir():
        raise FileNotFoundError(f"--out {out}: no such results folder")
    writable_folder(out, "--out")  # before reading every run and drawing the figures
    for path in write_report(out, figures=not args.no_figures):
        print(f"wrote {path}")
    return 0
