"""The GLUE readers on real files, and their errors.

Two sources: the small real slices shipped in tests/fixtures/glue (always there), and the full data in
$MINIBERT_DATA (default ../shared/data; skipped with a reason when absent, required under CI=true).
Counts and label counts of the full files are the ones their data README documents; every file is also
recounted here with csv / plain line reading, independently of minibert_adapters.training.data.
"""

import csv
from collections import Counter

import pytest
from helpers import GLUE_SLICES, data_dir, require

from minibert_adapters.training.data import TASKS, Example, default_data_dir, read_task

# (task, split) -> (rows, {label: count}) from ../shared/data/README.md; RTE: 0 = entailment.
README = {
    ("sst2", "train"): (67_349, {0: 29_780, 1: 37_569}),
    ("sst2", "dev"): (872, {0: 428, 1: 444}),
    ("cola", "train"): (8_551, {1: 6_023, 0: 2_528}),
    ("cola", "dev"): (1_043, {1: 721, 0: 322}),
    ("rte", "train"): (2_490, {0: 1_249, 1: 1_241}),
    ("rte", "dev"): (277, {0: 146, 1: 131}),
    ("sst2-sentences", "train"): (6_920, {0: 3_310, 1: 3_610}),
    ("sst2-sentences", "dev"): (872, {0: 428, 1: 444}),
}


def real_file(task, split, folder=None):
    """The file of `task` / `split` in `folder` (default: the full data, skipped outside CI when absent)."""
    path = (folder or data_dir()) / TASKS[task].folder / TASKS[task].files[split]
    require(path.is_file(), f"{path} (the full GLUE data; set MINIBERT_DATA)")
    return path


def full_data(task, split):
    """The full data folder, once the file is known to be there (so a reader never runs on a missing file)."""
    real_file(task, split)
    return data_dir()


def raw_rows(task, split, folder=None):
    """The file's records by an independent route: TSV rows without the header, or `label text` lines."""
    path = real_file(task, split, folder)
    with open(path, encoding="utf-8", newline="") as f:
        if task == "sst2-sentences":
            return [line.rstrip("\n").split(" ", 1) for line in f]
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows if task == "cola" else rows[1:]


@pytest.mark.parametrize("task, split", list(README))
def test_counts_and_labels_match_the_readme_and_the_raw_file(task, split):
    examples = read_task(task, split, full_data(task, split))
    n, labels = README[(task, split)]
    assert len(examples) == n == len(raw_rows(task, split))
    assert Counter(e.label for e in examples) == labels
    assert all(isinstance(e, Example) and type(e.label) is int for e in examples)


@pytest.mark.parametrize("task, split", list(README))
def test_texts_are_the_raw_text_fields(task, split):
    examples = read_task(task, split, full_data(task, split))
    raw = raw_rows(task, split)
    text_a = {"sst2": lambda r: r[0].strip(), "cola": lambda r: r[3], "rte": lambda r: r[1],
              "sst2-sentences": lambda r: r[1]}[task]
    assert [e.text_a for e in examples] == [text_a(r) for r in raw]
    assert all(e.text_a and e.text_a == e.text_a.strip() for e in examples)
    if task == "rte":
        assert [e.text_b for e in examples] == [r[2] for r in raw]
        assert all(e.text_b for e in examples)
    else:
        assert all(e.text_b is None for e in examples)


def test_format_details_the_readme_describes():
    for task, split in README:
        real_file(task, split)
    sst2 = read_task("sst2", "train", data_dir())
    assert sst2[0] == Example("hide new secretions from the parental units", None, 0)  # trailing space stripped
    with open(real_file("sst2", "train"), encoding="utf-8") as f:
        assert f.readlines()[1] == "hide new secretions from the parental units \t0\n"
    # CoLA dev has no final newline; its last row is still read whole. (The README names "Anson became a muscle
    # bound." as the last line; that is the last in-domain row, line 527; the file ends with the out-of-domain set.)
    raw_bytes = real_file("cola", "dev").read_bytes()
    assert not raw_bytes.endswith(b"\n")
    source, label, mark, sentence = raw_bytes.decode("utf-8").rsplit("\n", 1)[1].split("\t")
    assert read_task("cola", "dev", data_dir())[-1] == Example(sentence, None, int(label))
    # The label is column 2, not the author's mark in column 3.
    cola = read_task("cola", "train", data_dir())
    marks = [r[2] for r in raw_rows("cola", "train")]
    assert {m for m, e in zip(marks, cola) if e.label == 1} == {""} and "*" in marks
    # RTE: entailment -> 0, not_entailment -> 1, as the HF glue dataset.
    raw = raw_rows("rte", "dev")
    assert [e.label for e in read_task("rte", "dev", data_dir())] == [
        {"entailment": 0, "not_entailment": 1}[r[3]] for r in raw]
    # The same 872 dev sentences in both SST-2 versions, with the same labels (texts differ in brackets/accents).
    glue, kim = read_task("sst2", "dev", data_dir()), read_task("sst2-sentences", "dev", data_dir())
    assert Counter(e.label for e in glue) == Counter(e.label for e in kim)
    assert any("-lrb-" in e.text_a for e in kim) and not any("-lrb-" in e.text_a for e in glue)


# The slices: (task, split) -> rows kept, as tests/fixtures/glue/README.md records them.
SLICES = {("sst2", "train"): 300, ("sst2", "dev"): 100, ("cola", "train"): 300, ("cola", "dev"): 100,
          ("rte", "train"): 120, ("rte", "dev"): 40, ("sst2-sentences", "train"): 300, ("sst2-sentences", "dev"): 100}


@pytest.mark.parametrize("task, split", list(SLICES))
def test_the_shipped_slices_read_like_their_raw_files(task, split):
    examples = read_task(task, split, GLUE_SLICES)
    raw = raw_rows(task, split, GLUE_SLICES)
    assert len(examples) == len(raw) == SLICES[(task, split)]
    text_a = {"sst2": lambda r: r[0].strip(), "cola": lambda r: r[3], "rte": lambda r: r[1],
              "sst2-sentences": lambda r: r[1]}[task]
    assert [e.text_a for e in examples] == [text_a(r) for r in raw]
    label = {"sst2": lambda r: r[1], "cola": lambda r: r[1], "rte": lambda r: str(int(r[3] == "not_entailment")),
             "sst2-sentences": lambda r: r[0]}[task]
    assert [str(e.label) for e in examples] == [label(r) for r in raw]
    assert set(Counter(e.label for e in examples)) == {0, 1}  # both classes, so a model can beat chance on them


def test_each_slice_is_the_head_of_its_full_file():
    for task, split in SLICES:
        full = (data_dir() / TASKS[task].folder / TASKS[task].files[split])
        require(full.is_file(), f"{full} (the full GLUE data; set MINIBERT_DATA)")
        sliced = (GLUE_SLICES / TASKS[task].folder / TASKS[task].files[split]).read_bytes()
        assert full.read_bytes().startswith(sliced.rstrip(b"\n")), f"{task}/{split}"


def test_task_metadata():
    assert set(TASKS) == {"sst2", "cola", "rte", "sst2-sentences"}
    assert all(t.num_labels == 2 for t in TASKS.values())
    assert TASKS["cola"].metric == "matthews" and TASKS["sst2"].metric == "accuracy"


def test_unknown_task_or_split_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'mrpc'.*sst2, cola, rte, sst2-sentences"):
        read_task("mrpc", "train", tmp_path)
    with pytest.raises(ValueError, match="no split 'test'.*train, dev"):
        read_task("sst2", "test", tmp_path)


def test_missing_file_names_the_path_and_minibert_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SST-2/dev\.tsv not found.*MINIBERT_DATA"):
        read_task("sst2", "dev", tmp_path)


def test_minibert_data_environment_variable_is_the_default(tmp_path, monkeypatch):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\na b \t1\nc\t0\n", encoding="utf-8")
    monkeypatch.setenv("MINIBERT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert read_task("sst2", "dev") == [Example("a b", None, 1), Example("c", None, 0)]
    monkeypatch.setenv("MINIBERT_DATA", "")
    assert default_data_dir().parts[-2:] == ("shared", "data")


@pytest.mark.parametrize("task, content, message", [
    ("sst2", "sentence\tlabel\ngood\t2\n", r"dev\.tsv:2: label '2' is not one of"),
    ("sst2", "sentence\tlabel\ngood\t1\tx\n", r"dev\.tsv:2: expected 2 tab-separated fields, got 3"),
    ("sst2", "text\tlabel\ngood\t1\n", r"dev\.tsv:1: expected the header"),
    ("sst2", "sentence\tlabel\n \t1\n", r"dev\.tsv:2: empty text"),
    ("cola", "gj04\t1\t\tok.\nbad row\n", r"dev\.tsv:2: expected 4 tab-separated fields, got 1"),
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n", r"dev\.tsv:2: label 'neutral'"),
    ("sst2-sentences", "1 fine\n\n0 bad\n", r"stsa\.binary\.dev:2: label '' is not one of"),  # blank between rows
    ("cola", "gj04\t1\t\tok.\n\ngj04\t0\t*\tbad.\n", r"dev\.tsv:2: expected 4 tab-separated fields, got 0"),
])
def test_malformed_rows_name_file_and_line(tmp_path, task, content, message):
    spec = TASKS[task]
    (tmp_path / spec.folder).mkdir()
    (tmp_path / spec.folder / spec.files["dev"]).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_task(task, "dev", tmp_path)


@pytest.mark.parametrize("task, content, expected", [
    ("sst2", "sentence\tlabel\ngood \t1\n\n", [Example("good", None, 1)]),
    ("cola", "gj04\t1\t\tok.\r\n\r\n", [Example("ok.", None, 1)]),
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n \n\n", [Example("a", "b", 0)]),
    ("sst2-sentences", "1 fine\n\n", [Example("fine", None, 1)]),
])
def test_a_bom_and_blank_lines_at_the_end_are_not_rows(tmp_path, task, content, expected):
    spec = TASKS[task]
    (tmp_path / spec.folder).mkdir()
    path = tmp_path / spec.folder / spec.files["dev"]
    path.write_text("\ufeff" + content, encoding="utf-8")  # the byte-order mark Windows editors write
    assert read_task(task, "dev", tmp_path) == expected


@pytest.mark.parametrize("task", ["sst2", "cola", "rte"])
def test_a_sentence_longer_than_csvs_default_field_limit_is_read(tmp_path, task):
    long = "word " * 40_000 + "end"  # 200,003 characters: csv refuses fields over 131,072 by default
    content = {"sst2": f"sentence\tlabel\n{long}\t1\n", "cola": f"gj04\t1\t\t{long}\n",
               "rte": f"index\tsentence1\tsentence2\tlabel\n0\t{long}\tb\tentailment\n"}[task]
    spec = TASKS[task]
    (tmp_path / spec.folder).mkdir()
    (tmp_path / spec.folder / spec.files["dev"]).write_text(content, encoding="utf-8")
    assert [e.text_a for e in read_task(task, "dev", tmp_path)] == [long]
