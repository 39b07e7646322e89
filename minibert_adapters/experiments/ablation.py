"""Houlsby2019 Figure 6 (left, centre): switch a trained adapter off in a span of layers, without retraining.

`set_active_adapter(model, name, layers=...)` applies the adapter only in the given layers; removing the
span [first, last] is applying it in every other layer. The trained LayerNorms and head stay in place, as in
the paper's ablation (only the adapter modules are removed).
"""

from __future__ import annotations

import json
from pathlib import Path

from adapters import set_active_adapter


def layers_without(span, num_layers: int) -> list:
    """The layers an adapter stays in when the span (first, last), inclusive, is removed."""
    first, last = span
    if not 0 <= first <= last < num_layers:
        raise ValueError(f"span {span} is not a range of layers within 0 .. {num_layers - 1}")
    return [i for i in range(num_layers) if not first <= i <= last]


def ablate_spans(model, name: str, score, log=None) -> dict:
    """score() with adapter `name` removed from every contiguous span of layers, and with none removed.

    Returns {"layers": L, "baseline": score with every adapter, "spans": [{"first", "last", "score", "drop"}]},
    drop = baseline - score. The model is left with the adapter active in every layer.
    """
    num_layers = model.config.num_hidden_layers
    set_active_adapter(model, name)
    baseline = score()
    if log:
        log(f"all adapters: {baseline:.4f}")
    spans = []
    try:
        for first in range(num_layers):
            for last in range(first, num_layers):
                set_active_adapter(model, name, layers=layers_without((first, last), num_layers))
                value = score()
                spans.append({"first": first, "last": last, "score": value, "drop": baseline - value})
                if log:
                    log(f"layers {first}..{last} removed: {value:.4f} (drop {baseline - value:+.4f})")
    finally:
        set_active_adapter(model, name)
    return {"layers": num_layers, "baseline": baseline, "spans": spans}


def write_ablation(result: dict, out: Path) -> list:
    """ablation.json, and ablation.png when matplotlib is installed; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ablation.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    written = [path]
    from minibert_adapters.experiments.figures import ablation_heatmap, have_matplotlib

    if have_matplotlib():
        written.append(ablation_heatmap(result, out / "ablation.png"))
    else:
        print("no heatmap: matplotlib is not installed (pip install 'minibert-adapters[figures]')")
    return written
