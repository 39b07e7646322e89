"""Readers for the GLUE-style classification data in $MINIBERT_DATA (in a checkout, ../shared/data).

Each reader returns a list of `Example(text_a, text_b, label)` with integer labels. The formats differ
(tests/fixtures/glue holds small real slices of each): SST-2 has a header `sentence<TAB>label`; CoLA has no
header and four columns (source, label, author mark, sentence); RTE has `index, sentence1, sentence2, label` with string
labels; SST-2-sentences is `<label> <sentence>` per line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int


@dataclass(frozen=True)
class Task:
    name: str
    folder: str
    files: dict          # split -> file name
    num_labels: int
    metric: str          # "accuracy" or "matthews" (CoLA, as GLUE and Houlsby2019 report)
    label_names: tuple = ()  # the name of label 0, 1, ... (string labels in other files map through it)


SENTIMENT = ("negative", "positive")
TASKS = {
    "sst2": Task("sst2", "SST-2", {"train": "train.tsv", "dev": "dev.tsv"}, 2, "accuracy", SENTIMENT),
    "cola": Task("cola", "CoLA", {"train": "train.tsv", "dev": "dev.tsv"}, 2, "matthews",
                 ("unacceptable", "acceptable")),
    "rte": Task("rte", "RTE", {"train": "train.tsv", "dev": "dev.tsv"}, 2, "accuracy",
                ("entailment", "not_entailment")),
    "sst2-sentences": Task("sst2-sentences", "SST-2-sentences",
                           {"train": "stsa.binary.train", "dev": "stsa.binary.dev"}, 2, "accuracy", SENTIMENT),
}
RTE_LABELS = {"entailment": 0, "not_entailment": 1}


def default_data_dir() -> Path | None:
    """$MINIBERT_DATA if set (and not empty); in a source checkout, ../shared/data beside the repository;
    otherwise None (an installed package has no natural place for the data: set MINIBERT_DATA or --data)."""
    env = os.environ.get("MINIBERT_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]  # minibert_adapters/training/data.py -> the checkout
    return repo.parent / "shared" / "data" if (repo / "pyproject.toml").is_file() else None


def task_path(task: str, split: str, data_dir=None) -> Path:
    """The file holding `split` of `task`; a ValueError naming the choices for an unknown task or split."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    spec = TASKS[task]
    if split not in spec.files:
        raise ValueError(f"task {task} has no split {split!r}; choose one of {', '.join(spec.files)}")
    folder = data_dir or default_data_dir()
    if folder is None:
        raise ValueError("no data folder: set MINIBERT_DATA (or pass --data) to the folder holding the GLUE "
                         f"task folders ({', '.join(t.folder for t in TASKS.values())})")
    return Path(folder) / spec.folder / spec.files[split]


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text, without a leading byte-order mark (Windows editors and Excel write one;
    it would otherwise become part of the first column's name); a ValueError naming the file and line of the
    first byte that is not UTF-8."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _without_trailing_blank_lines(text: str) -> str:
    """`text` ending at the newline of its last non-blank line: the blank line(s) an editor leaves at the end
    are not rows. A blank line between rows is kept, so that it is still refused with its line number."""
    return re.sub(r"\n[ \t\r\n]*\Z", "\n", text)


def _csv_rows(path: Path, text: str, **options):
    """(line number, fields) of csv.reader over `text`; a csv.Error becomes a ValueError naming file and line.

    No field is refused for its length: csv's default limit (131,072 characters) is raised to the length of
    the text, which no field can exceed, because a very long sentence is input to truncate, not an error.
    """
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f, **options)
        while True:
            start = reader.line_num + 1  # a quoted CSV field may span lines: a row is named by its first
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise ValueError(f"{path}:{reader.line_num}: cannot read this row: {e}") from None
            yield start, row


def _rows(path: Path, n_fields: int, header: list | None):
    """(line number, fields) of a TSV file, checking the header and that every row has n_fields fields."""
    text = _without_trailing_blank_lines(read_text(path))
    for line_no, row in _csv_rows(path, text, delimiter="\t", quoting=csv.QUOTE_NONE):
        if line_no == 1 and header is not None:
            if row != header:
                raise ValueError(f"{path}:1: expected the header {header}, got {row}")
            continue
        if len(row) != n_fields:
            raise ValueError(f"{path}:{line_no}: expected {n_fields} tab-separated fields, got {len(row)}")
        yield line_no, row


def _example(path: Path, line_no: int, text_a: str, text_b: str | None, label, labels: dict) -> Example:
    if label not in labels:
        raise ValueError(f"{path}:{line_no}: label {label!r} is not one of {sorted(labels)}")
    if not text_a or (text_b is not None and not text_b):
        raise ValueError(f"{path}:{line_no}: empty text")
    return Example(text_a, text_b, labels[label])


BINARY = {"0": 0, "1": 1}


def read_task(task: str, split: str, data_dir=None) -> list:
    """All examples of `task` ("sst2", "cola", "rte", "sst2-sentences") and `split` ("train", "dev").

    Labels are ints: 0/1 as in the files for SST-2, CoLA and SST-2-sentences; RTE's entailment -> 0,
    not_entailment -> 1 (the HF `glue` order). A malformed row is a ValueError naming file and line.
    """
    path = task_path(task, split, data_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set MINIBERT_DATA (or --data) to the folder holding "
                                f"{TASKS[task].folder}/ (the README's Data section says where GLUE comes from)")
    return read_task_file(task, path)


def read_task_file(task: str, path) -> list:
    """The examples of one file in `task`'s original GLUE format (see read_task)."""
    path = Path(path)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if task == "sst2":
        # PTB-tokenised sentences end with a space before the tab: strip it.
        return [_example(path, i, r[0].strip(), None, r[1], BINARY)
                for i, r in _rows(path, 2, ["sentence", "label"])]
    if task == "cola":
        # No header; columns: source, label, author's mark (not the label), sentence.
        return [_example(path, i, r[3], None, r[1], BINARY) for i, r in _rows(path, 4, None)]
    if task == "rte":
        return [_example(path, i, r[1], r[2], r[3], RTE_LABELS)
                for i, r in _rows(path, 4, ["index", "sentence1", "sentence2", "label"])]
    examples = []  # sst2-sentences: "<label> <sentence>" per line
    with io.StringIO(_without_trailing_blank_lines(read_text(path))) as f:
        for line_no, line in enumerate(f, start=1):
            label, _, text = line.rstrip("\n").partition(" ")
            examples.append(_example(path, line_no, text.strip(), None, label, BINARY))
    return examples


# --- Files in other layouts (minibert evaluate / predict): a header names the columns ---------------------

FORMATS = ("tsv", "csv", "jsonl", "glue")  # glue: a task's original file (CoLA has no header; SST-2 sentences
                                          # is "<label> <sentence>"), read by read_task_file
# GLUE's column names, tried in this order when no column is given: (text, text pair).
DEFAULT_COLUMNS = (("sentence1", "sentence2"), ("question", "sentence"), ("sentence", None))


def table_format(path, fmt=None) -> str:
    """The format of `path`: `fmt` if given, else from the extension (.tsv, .csv, .jsonl / .json)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    by_suffix = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
    if suffix not in by_suffix:
        raise ValueError(f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
                         f"name it .tsv, .csv or .jsonl, or give the format ({', '.join(FORMATS)}; glue for a "
                         "task's original file)")
    return by_suffix[suffix]


def _records(path: Path, fmt: str):
    """(line number, {column: text}) of a TSV / CSV file with a header, or of a JSON-lines file."""
    text = read_text(path)
    if fmt == "jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not a JSON object: {e.msg}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: not a JSON object")
            yield line_no, record
        return
    # GLUE's TSV files are not quoted (a '"' is part of the text); CSV files are.
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    rows = _csv_rows(path, text, **options)
    _, header = next(rows, (1, None))
    if not header:
        raise ValueError(f"{path}: empty file (expected a header row naming the columns)")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # a dict of the row would keep the last one silently
        raise ValueError(f"{path}:1: column {twice[0]!r} appears {header.count(twice[0])} times in the header")
    for line_no, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}:{line_no}: {len(row)} fields, but the header has {len(header)}")
        yield line_no, dict(zip(header, row))


def _label(path, line_no, value, task, num_labels=None) -> int:
    """An integer label: an int (or its text) below the task's (else num_labels') class count, or a name in the
    task's label list."""
    names = TASKS[task].label_names if task else ()
    n = TASKS[task].num_labels if task else num_labels
    if isinstance(value, bool) or value is None:
        value = str(value)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        label = int(value)
        if label < 0 or (n is not None and label >= n):
            raise ValueError(f"{path}:{line_no}: label {value!r} is not a class index from 0 to {(n or 2) - 1}")
        return label
    if isinstance(value, str) and value.strip() in names:
        return names.index(value.strip())
    choices = f"one of {list(names)} or an index" if names else "an integer class index (or give the task)"
    raise ValueError(f"{path}:{line_no}: label {value!r} is not {choices}")


def read_table(path, fmt=None, text_column=None, text_pair_column=None, label_column="label",
               task=None, need_labels=True, num_labels=None) -> list:
    """Examples from a TSV / CSV file with a header row, or a JSON-lines file (one object per line).

    Columns: `text_column` (and `text_pair_column` for pairs); when not given, GLUE's names, the first that
    the file has of sentence1/sentence2, question/sentence, sentence. Labels from `label_column`: integers,
    or names in `task`'s label list (RTE's entailment / not_entailment); num_labels (without a task): integer
    labels must be below it. need_labels=False (prediction) ignores labels and gives -1. Every problem is a
    ValueError naming the file (and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    if fmt == "glue":
        if task is None:
            raise ValueError(f"{path}: the glue format needs the task (its files differ)")
        examples = read_task_file(task, path)
        return examples if need_labels else [Example(e.text_a, e.text_b, -1) for e in examples]
    fmt = table_format(path, fmt)
    examples, columns = [], None
    for line_no, record in _records(path, fmt):
        if columns is None:
            columns = _choose_columns(path, set(record), text_column, text_pair_column)
            if need_labels and label_column not in record:
                raise ValueError(f"{path}: no label column {label_column!r} (columns: {sorted(record)}); "
                                 "name it with the label column option")
        a_col, b_col = columns
        text_a, text_b = record.get(a_col), record.get(b_col) if b_col else None
        for column, value in ((a_col, text_a), (b_col, text_b)):
            if column and not (isinstance(value, str) and value.strip()):
                raise ValueError(f"{path}:{line_no}: column {column!r} is missing, empty or not text")
        label = _label(path, line_no, record.get(label_column), task, num_labels) if need_labels else -1
        examples.append(Example(text_a.strip(), text_b.strip() if text_b else None, label))
    if not examples:
        raise ValueError(f"{path}: no examples (only a header, or empty)")
    return examples


def _choose_columns(path, have: set, text_column, text_pair_column) -> tuple:
    if text_column is not None:
        missing = [c for c in (text_column, text_pair_column) if c is not None and c not in have]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (columns: {sorted(have)})")
        return text_column, text_pair_column
    if text_pair_column is not None:
        raise ValueError("a text pair column needs the text column too")
    for a, b in DEFAULT_COLUMNS:
        if a in have and (b is None or b in have):
            return a, b
    raise ValueError(f"{path}: none of GLUE's text columns (sentence; sentence1 + sentence2; question + sentence) "
                     f"among {sorted(have)}; name the text column, or for a task's original GLUE file (CoLA, "
                     "SST-2 sentences: no header) give the glue format")
