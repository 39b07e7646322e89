"""Houlsby2019 Figure 6 (left, centre): switch a trained adapter off in a span of layers, without retraining.

`set_active_adapter(model, name, layers=...)` applies the adapter only in the given layers; removing the
span [first, last] is applying it in every other layer. The trained LayerNorms and head stay in place, as in
the paper's ablation (only the adapter modules are removed).
"""

from __future__ import annotations

from pathlib import Path

from adapters import set_active_adapter


def layers_without(span, num_layers: int) -> list:
    """The layers an adapter stays in when the span (first, last), inclusive, is removed."""
    first, last = span
    if not 0 <= first <= last < num_layers:
        raise ValueError(f"span {span} is not a range of layers within 0 .. {num_layers - 1}")
    return [i for i in range(num_layers) if not first <= i <= last]


def ablate_spans(model, name: str, score, log=None, partial=None, done=None) -> dict:
    """score() with adapter `name` removed from every contiguous span of layers, and with none removed.

    Returns {"layers": L, "baseline": score with every adapter, "spans": [{"first", "last", "score", "drop"}],
    "complete": True}, drop = baseline - score. partial(result so far, "complete": False) is called after
    each score, so that a caller can keep what is done if the rest never comes; done: such a result, whose
    baseline and spans are kept instead of scored again. The model is left with the adapter active in every
    layer.
    """
    num_layers = model.config.num_hidden_layers
    set_active_adapter(model, name)
    if done is not None and done.get("layers") != num_layers:
        raise ValueError(f"the unfinished ablation has {done.get('layers')} layers, the model {num_layers}")
    baseline = done["baseline"] if done is not None else score()
    if log:
        log(f"all adapters: {baseline:.4f}")
    spans = list(done["spans"]) if done is not None else []
    scored = {(s["first"], s["last"]) for s in spans}
    if partial:
        partial({"layers": num_layers, "baseline": baseline, "spans": list(spans), "complete": False})
    try:
        for first in range(num_layers):
            for last in range(first, num_layers):
                if (first, last) in scored:
                    continue
                set_active_adapter(model, name, layers=layers_without((first, last), num_layers))
                value = score()
                spans.append({"first": first, "last": last, "score": value, "drop": baseline - value})
                if log:
                    log(f"layers {first}..{last} removed: {value:.4f} (drop {baseline - value:+.4f})")
                if partial:
                    partial({"layers": num_layers, "baseline": baseline, "spans": list(spans), "complete": False})
    finally:
        set_active_adapter(model, name)
    spans.sort(key=lambda s: (s["first"], s["last"]))
    return {"layers": num_layers, "baseline": baseline, "spans": spans, "complete": True}


def is_complete(result: dict) -> bool:
    """Whether an ablation.json holds every span (files written before "complete" existed always did)."""
    spans = result["layers"] * (result["layers"] + 1) // 2
    return result.get("complete", True) and len(result.get("spans", [])) == spans


def write_ablation_json(result: dict, out: Path) -> Path:
    """out/ablation.json, replaced atomically: a crash mid-write leaves the previous version, never half a file."""
    from minibert_adapters.training.checkpoints import write_json

    path = out / "ablation.json"
    write_json(path, result)
    return path


def write_ablation(result: dict, out: Path) -> list:
    """ablation.json, and ablation.png when matplotlib is installed; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    path = write_ablation_json(result, out)
    written = [path]
    from minibert_adapters.experiments.figures import ablation_heatmap, have_matplotlib

    if have_matplotlib():
        written.append(ablation_heatmap(result, out / "ablation.png"))
    else:
        print("no heatmap: matplotlib is not installed (pip install 'minibert-adapters[figures]')")
    return written
