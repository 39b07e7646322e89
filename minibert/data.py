"""Readers for the GLUE-style classification data in $MINIBERT_DATA (default ../shared/data).

Each reader returns a list of `Example(text_a, text_b, label)` with integer labels. The formats differ
(see ../shared/data/README.md): SST-2 has a header `sentence<TAB>label`; CoLA has no header and four
columns (source, label, author mark, sentence); RTE has `index, sentence1, sentence2, label` with string
labels; SST-2-sentences is `<label> <sentence>` per line.
"""

from __future__ import annotations

import csv
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


def default_data_dir() -> Path:
    return Path(os.environ.get("MINIBERT_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


def _rows(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        yield from csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


def read_task(task: str, split: str, data_dir=None) -> list:
    """All examples of `task` ("sst2", "cola", "rte", "sst2-sentences") and `split` ("train", "dev")."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    spec = TASKS[task]
    if split not in spec.files:
        raise ValueError(f"task {task} has no split {split!r}; choose one of {', '.join(spec.files)}")
    path = Path(data_dir or default_data_dir()) / spec.folder / spec.files[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set MINIBERT_DATA to the folder holding {spec.folder}/")
    examples = []
    if task == "sst2":
        rows = _rows(path)
        next(rows)  # header
        examples = [Example(r[0].strip(), None, int(r[1])) for r in rows]
    elif task == "cola":
        examples = [Example(r[3], None, int(r[1])) for r in _rows(path)]
    elif task == "rte":
        rows = _rows(path)
        next(rows)
        examples = [Example(r[1], r[2], RTE_LABELS[r[3]]) for r in rows]
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                label, text = line.rstrip("\n").split(" ", 1)
                examples.append(Example(text, None, int(label)))
    return examples
