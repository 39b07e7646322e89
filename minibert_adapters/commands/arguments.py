"""What every `minibert` subcommand shares: argument types that reject bad values at parse time, and the
checks that must run before anything slow is loaded (an output that cannot be written, a length the
model cannot take)."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
from pathlib import Path

EXIT_CODES = ("exit status: 0 success, 1 a checked fact fails (check / crosscheck), 2 bad input, 3 training "
              "diverged (train: a non-finite loss or gradient; history.json says 'diverged'), 130 interrupted")
DIVERGED = 3  # the exit status of a `minibert train` that diverged (EXIT_CODES)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text):
    return 0 if text.strip() == "0" else positive_int(text)


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def fraction(text):
    """A number in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 up to (not including) 1, got {text!r}")
    return value


def writable_folder(path, option: str) -> Path:
    """Create `path` (and its parents) if needed and prove a file can be written in it; a ValueError naming
    the option and the cause otherwise (a file in the way, a read-only folder)."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{option} {path}: {parent} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{option} {path} is not writable: {e.strerror or e}") from None
    return path


def writable_file(path, option: str) -> Path:
    """The folder of an output file must exist (or be creatable) and be writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    writable_folder(path.parent if str(path.parent) else Path("."), option)
    return path


def model_max_length(model_path) -> int:
    """max_position_embeddings of the model a command will load, read from its config.json alone."""
    from minibert.config import BertConfig
    from minibert.pretrained import resolve_model_dir

    return BertConfig.from_json_file(resolve_model_dir(model_path) / "config.json").max_position_embeddings


def check_max_length(max_length: int, model_path) -> None:
    limit = model_max_length(model_path)
    if max_length > limit:
        raise ValueError(f"--max-length {max_length} exceeds the model's max_position_embeddings {limit}")


class _OutputThatOutlivesItsReader:
    """A text stream that stops writing, silently, once its reader is gone (a closed terminal gives EIO, a
    pipe whose reader ended EPIPE), so that a long command keeps going and saves its work.

    The file descriptor is then pointed at /dev/null: what is still buffered would fail again when Python
    flushes at exit, which turns the exit status into 120."""

    def __init__(self, stream):
        self.stream, self.lost = stream, False

    def write(self, text):
        if not self.lost:
            try:
                return self.stream.write(text)
            except OSError:
                self._lose()
        return len(text)

    def flush(self):
        if not self.lost:
            try:
                self.stream.flush()
            except OSError:
                self._lose()

    def _lose(self):
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor (a StringIO): nothing buffered
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def output_that_outlives_its_reader():
    """sys.stdout and sys.stderr as `_OutputThatOutlivesItsReader` for the commands whose results are files
    (train, experiments run): their console output is progress, and losing it must not lose the run."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _OutputThatOutlivesItsReader(sys.stdout), _OutputThatOutlivesItsReader(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
