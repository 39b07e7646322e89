"""Readers for the GLUE-style classification data in $MINIBERT_DATA (in a checkout, ../shared/data).

Each reader returns a list of `Example(text_a, text_b, label)` with integer labels. The formats differ
(tests/fixtures/glue holds small real slices of each): SST-2 has a header `sentence<TAB>label`; CoLA has no
header and four columns (source, label, author mark, sentence); RTE has `index, sentence1, sentence2, label` with string
labels; SST-2-sentences is `<label> <sentence>` per line.
"""

from __future__ import annotations

import csv
import io
import os
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


TASKS = {
    "sst2": Task("sst2", "SST-2", {"train": "train.tsv", "dev": "dev.tsv"}, 2, "accuracy"),
    "cola": Task("cola", "CoLA", {"train": "train.tsv", "dev": "dev.tsv"}, 2, "matthews"),
    "rte": Task("rte", "RTE", {"train": "train.tsv", "dev": "dev.tsv"}, 2, "accuracy"),
    "sst2-sentences": Task("sst2-sentences", "SST-2-sentences",
                           {"train": "stsa.binary.train", "dev": "stsa.binary.dev"}, 2, "accuracy"),
}
RTE_LABELS = {"entailment": 0, "not_entailment": 1}


def default_data_dir() -> Path | None:
    """$MINIBERT_DATA if set (and not empty); in a source checkout, ../shared/data beside the repository;
    otherwise None (an installed package has no natural place for the data: set MINIBERT_DATA or --data)."""
    env = os.environ.get("MINIBERT_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
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
    """The whole file as UTF-8 text; a ValueError naming the file and line of the first byte that is not."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _rows(path: Path, n_fields: int, header: list | None):
    """(line number, fields) of a TSV file, checking the header and that every row has n_fields fields."""
    with io.StringIO(read_text(path), newline="") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
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
    with io.StringIO(read_text(path)) as f:
        for line_no, line in enumerate(f, start=1):
            label, _, text = line.rstrip("\n").partition(" ")
            examples.append(_example(path, line_no, text.strip(), None, label, BINARY))
    return examples
