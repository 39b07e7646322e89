"""read_table: TSV / CSV with a header and JSON lines, GLUE's column names as defaults, labels as ints or the
task's names, and one clear error naming file and line for each kind of bad input."""

import json

import pytest
from helpers import GLUE_SLICES

from minibert_adapters.training.data import Example, read_table, read_task


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_glue_files_with_a_header_read_as_their_task_readers_read_them():
    assert read_table(GLUE_SLICES / "SST-2" / "dev.tsv") == read_task("sst2", "dev", GLUE_SLICES)
    # RTE: the pair columns sentence1 / sentence2 by default, string labels through the task's names.
    assert read_table(GLUE_SLICES / "RTE" / "dev.tsv", task="rte") == read_task("rte", "dev", GLUE_SLICES)


def test_csv_is_quoted_and_tsv_is_not(tmp_path):
    csv_file = write(tmp_path, "a.csv", 'label,sentence\n1,"good, really"\n0,"a ""bad"" film"\n')
    assert read_table(csv_file) == [Example("good, really", None, 1), Example('a "bad" film', None, 0)]
    tsv_file = write(tmp_path, "a.tsv", 'sentence\tlabel\n"quoted" as is\t1\n')
    assert read_table(tsv_file) == [Example('"quoted" as is', None, 1)]


def test_jsonl_with_pairs_named_question_and_sentence_and_integer_labels(tmp_path):
    rows = [{"question": "who?", "sentence": "me.", "label": 1}, {"question": "why?", "sentence": "no.", "label": 0}]
    path = write(tmp_path, "q.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_table(path) == [Example("who?", "me.", 1), Example("why?", "no.", 0)]


def test_named_columns_and_label_names(tmp_path):
    path = write(tmp_path, "x.csv", "review,stars,verdict\nfine,5,positive\nawful,1,negative\n")
    got = read_table(path, text_column="review", label_column="verdict", task="sst2-sentences")
    assert got == [Example("fine", None, 1), Example("awful", None, 0)]


def test_prediction_needs_no_label_column(tmp_path):
    path = write(tmp_path, "p.tsv", "sentence\nsome text\n")
    assert read_table(path, need_labels=False) == [Example("some text", None, -1)]


@pytest.mark.parametrize("name, text, kwargs, message", [
    ("a.tsv", "sentence\tlabel\nok\t1\nbad row\n", {}, "a.tsv:3: 1 fields, but the header has 2"),
    ("a.tsv", "sentence\tlabel\nok\tpositive\n", {}, "a.tsv:2: label 'positive' is not an integer class index"),
    ("a.tsv", "sentence\tlabel\nok\t7\n", {"task": "sst2"}, "a.tsv:2: label '7' is not a class index from 0 to 1"),
    ("a.tsv", "sentence\tlabel\nok\tmaybe\n", {"task": "rte"}, "a.tsv:2: label 'maybe' is not one of"),
    ("a.tsv", "sentence\tlabel\n\t1\n", {}, "a.tsv:2: column 'sentence' is missing, empty or not text"),
    ("a.tsv", "text\tlabel\nok\t1\n", {}, "a.tsv: none of GLUE's text columns"),
    ("a.tsv", "sentence\tgold\nok\t1\n", {}, "a.tsv: no label column 'label'"),
    ("a.tsv", "sentence\tlabel\n", {}, "a.tsv: no examples"),
    ("a.tsv", "", {}, "a.tsv: empty file"),
    ("a.jsonl", '{"sentence": "ok", "label": 1}\n[1, 2]\n', {}, "a.jsonl:2: not a JSON object"),
    ("a.jsonl", '{"sentence": "ok", "label": 1}\n{"sentence": \n', {}, "a.jsonl:2: not a JSON object"),
    ("a.jsonl", '{"sentence": 3, "label": 1}\n', {}, "a.jsonl:1: column 'sentence' is missing"),
    ("a.txt", "sentence\tlabel\n", {}, "cannot tell the format from the extension '.txt'"),
    ("a.csv", "sentence,label\nok,1\n", {"text_column": "review"}, "a.csv: no column 'review'"),
])
def test_bad_files_name_the_file_and_line(tmp_path, name, text, kwargs, message):
    with pytest.raises(ValueError) as info:
        read_table(write(tmp_path, name, text), **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("name, text", [
    ("bom.csv", "\ufeffsentence,label\nok,1\n"),      # Excel's "CSV UTF-8" starts with a byte-order mark
    ("bom.tsv", "\ufeffsentence\tlabel\nok\t1\n\n"),  # and a blank line at the end
    ("bom.jsonl", '\ufeff{"sentence": "ok", "label": 1}\n\n'),
])
def test_a_bom_and_a_trailing_blank_line_are_read(tmp_path, name, text):
    assert read_table(write(tmp_path, name, text)) == [Example("ok", None, 1)]


@pytest.mark.parametrize("name, template", [("long.tsv", "sentence\tlabel\n{}\t1\n"),
                                            ("long.csv", 'sentence,label\n"{}",1\n')])
def test_a_field_longer_than_csvs_default_limit_is_read(tmp_path, name, template):
    long = "x, y " * 40_000  # 200,000 characters: csv refuses fields over 131,072 by default
    assert read_table(write(tmp_path, name, template.format(long))) == [Example(long.strip(), None, 1)]


def test_a_row_csv_cannot_read_names_the_file_and_its_line(tmp_path, monkeypatch):
    import csv

    import minibert_adapters.training.data as data

    # Lenient csv reads any text; a strict reader stands in for whatever csv.Error a future csv raises.
    reader = csv.reader
    monkeypatch.setattr(data.csv, "reader", lambda f, **options: reader(f, strict=True, **options))
    path = write(tmp_path, "a.csv", 'sentence,label\nok,1\n"quoted"text,0\n')
    with pytest.raises(ValueError, match=r"^\S*a\.csv:3: cannot read this row: ',' expected after '\"'$"):
        read_table(path)

def test_a_file_that_is_not_utf8_or_missing_is_named(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_bytes(b"sentence\tlabel\n\xff\t1\n")
    with pytest.raises(ValueError, match=r"b\.tsv:2: not UTF-8"):
        read_table(path)
    with pytest.raises(FileNotFoundError, match="nothing.tsv not found"):
        read_table(tmp_path / "nothing.tsv")


def test_the_glue_format_reads_a_tasks_original_file_and_needs_the_task():
    cola = GLUE_SLICES / "CoLA" / "dev.tsv"  # no header: source, label, mark, sentence
    assert read_table(cola, "glue", task="cola") == read_task("cola", "dev", GLUE_SLICES)
    unlabelled = read_table(cola, "glue", task="cola", need_labels=False)
    assert {e.label for e in unlabelled} == {-1} and len(unlabelled) == 100
    with pytest.raises(ValueError, match="the glue format needs the task"):
        read_table(cola, "glue")
    with pytest.raises(ValueError, match="give the glue format"):
        read_table(cola)


def test_a_column_named_twice_in_the_header_is_refused(tmp_path):
    path = write(tmp_path, "d.tsv", "sentence\tlabel\tsentence\ngood\t1\tdup\n")
    with pytest.raises(ValueError, match=r"d.tsv:1: column 'sentence' appears 2 times"):
        read_table(path)
