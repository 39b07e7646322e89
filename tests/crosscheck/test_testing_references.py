"""References below the whole model (minibert_adapters.testing): one adapter module alone and one sub-layer give
the paper's formula, written out here in NumPy, and gradients that agree with central differences in float64;
`expected_trainable` is the set a case of the same config trains; `assert_matches_reference` passes a correct
case and fails a wrong one with the worst place and the diagnosis in its message."""

import crosscheck_zoo as zoo
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import AdapterConfig
from minibert import BertConfig
from minibert_adapters.testing import (
    adapter_reference,
    assert_matches_reference,
    bert_configs,
    expected_trainable,
    random_weights,
    reference_case,
    sublayer_reference,
    token_batches,
)

D, M, F_ = 6, 3, 11
BERT = BertConfig(vocab_size=10, hidden_size=D, num_hidden_layers=1, num_attention_heads=2, intermediate_size=F_,
                  max_position_embeddings=8, hidden_act="gelu_new")


def gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))


def layer_norm(z, g, b, eps=1e-12):
    mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
    return g * (z - mu) / np.sqrt(var + eps) + b


def adapter_weights(rng):
    return {"down.weight": rng.normal(size=(M, D)), "down.bias": rng.normal(size=M),
            "up.weight": rng.normal(size=(D, M)), "up.bias": rng.normal(size=D)}


def central_differences(f, arrays: dict, name: str, eps=1e-6) -> np.ndarray:
    """d f / d arrays[name], f(arrays) a scalar, entry by entry."""
    x = arrays[name]
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(arrays)
        x[i] = old - eps
        down = f(arrays)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def houlsby(w, h):
    return h + gelu_tanh(h @ w["down.weight"].T + w["down.bias"]) @ w["up.weight"].T + w["up.bias"]


def test_one_adapter_module_alone_is_the_papers_formula_with_its_gradients():
    rng = np.random.default_rng(0)
    w, h, cot = adapter_weights(rng), rng.normal(size=(2, 4, D)), rng.normal(size=(2, 4, D))
    ref = adapter_reference(AdapterConfig.from_preset("houlsby", bottleneck_size=M), w, h, cot)
    np.testing.assert_allclose(ref.output, houlsby(w, h), rtol=0, atol=1e-13)
    arrays = {**{k: v.copy() for k, v in w.items()}, "h": h.copy()}
    loss = lambda a: float((houlsby(a, a["h"]) * cot).sum())  # noqa: E731
    for name in arrays:
        np.testing.assert_allclose(ref.grads[name], central_differences(loss, arrays, name), rtol=1e-6, atol=1e-8)


def test_one_sublayer_is_layernorm_of_the_residual_and_the_adapted_output():
    rng = np.random.default_rng(1)
    w = {"dense.weight": rng.normal(size=(D, F_)), "dense.bias": rng.normal(size=D),
         "LayerNorm.weight": 1 + 0.1 * rng.normal(size=D), "LayerNorm.bias": 0.1 * rng.normal(size=D),
         **{f"adapter.{k}": v for k, v in adapter_weights(rng).items()}}
    h, x, cot = rng.normal(size=(2, 3, F_)), rng.normal(size=(2, 3, D)), rng.normal(size=(2, 3, D))

    def sublayer(a):
        dense = a["h"] @ a["dense.weight"].T + a["dense.bias"]
        adapted = houlsby({k.removeprefix("adapter."): v for k, v in a.items()}, dense)
        return layer_norm(a["x"] + adapted, a["LayerNorm.weight"], a["LayerNorm.bias"])

    ref = sublayer_reference(BERT, AdapterConfig.from_preset("houlsby", bottleneck_size=M), w, h, x, cot)
    arrays = {**{k: v.copy() for k, v in w.items()}, "h": h.copy(), "x": x.copy()}
    np.testing.assert_allclose(ref.output, sublayer(arrays), rtol=0, atol=1e-12)
    loss = lambda a: float((sublayer(a) * cot).sum())  # noqa: E731
    for name in arrays:
        np.testing.assert_allclose(ref.grads[name], central_differences(loss, arrays, name), rtol=1e-5, atol=1e-7)
    plain = sublayer_reference(BERT, None, {k: v for k, v in w.items() if not k.startswith("adapter.")}, h, x)
    dense = h @ w["dense.weight"].T + w["dense.bias"]
    np.testing.assert_allclose(plain.output, layer_norm(x + dense, w["LayerNorm.weight"], w["LayerNorm.bias"]),
                               atol=1e-12)


def test_wrong_weights_for_a_reference_are_named():
    rng = np.random.default_rng(0)
    config = AdapterConfig.from_preset("houlsby", bottleneck_size=M)
    w = adapter_weights(rng)
    with pytest.raises(ValueError, match="missing: up.bias"):
        adapter_reference(config, {k: v for k, v in w.items() if k != "up.bias"}, rng.normal(size=(2, D)))
    with pytest.raises(ValueError, match=r"down.weight has shape \(6, 3\), expected \(3, 6\)"):
        adapter_reference(config, {**w, "down.weight": w["down.weight"].T}, rng.normal(size=(2, D)))


@given(st.data())
def test_expected_trainable_is_what_a_reference_case_trains(data):
    config = data.draw(bert_configs(max_layers=2))
    adapter = AdapterConfig.from_preset("houlsby", bottleneck_size=5)
    case = reference_case(config, adapter, random_weights(config, adapter), data.draw(token_batches(config)))
    assert expected_trainable(config, adapter) == sorted(case.trainable)


def test_assert_matches_reference_passes_a_correct_case_and_names_a_wrong_one():
    assert assert_matches_reference(zoo.build(None))["ok"]
    with pytest.raises(AssertionError) as failure:
        assert_matches_reference(zoo.build("skip-connection"))
    message = str(failure.value)
    assert "worst hidden state layer" in message and "skip-connection:" in message


def documented_property_test(title: str) -> str:
    """The code block after `title` in docs/crosscheck.md."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "crosscheck.md").read_text()
    after = text[text.index(title):]
    return after[after.index("```python") + len("```python"):].split("```", 1)[0]


def run_as_a_module(code: str, folder, name: str):
    """Import `code` as the module `name` written in `folder` (as a user's test file would be)."""
    import importlib.util

    path = folder / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_numpy_property_test_runs_and_catches_a_planted_bug(tmp_path):
    import time

    code = documented_property_test("### Below the model")
    assert len(code.strip().splitlines()) < 40
    run_as_a_module(code, tmp_path, "doc_numpy_adapter").test_my_numpy_adapter_matches_the_reference()
    start = time.monotonic()
    # the classic slip in a hand-written backward: the skip's own gradient forgotten in dL/dh
    wrong = code.replace('"h": (g + dz @ w["down.weight"])', '"h": (dz @ w["down.weight"])')
    assert wrong != code
    with pytest.raises(AssertionError, match="h"):
        run_as_a_module(wrong, tmp_path, "doc_numpy_adapter_bug").test_my_numpy_adapter_matches_the_reference()
    assert time.monotonic() - start < 60


def test_an_option_a_kind_has_not_is_refused_naming_the_kind():
    from minibert_adapters.testing import adapter_configs

    with pytest.raises(ValueError, match="kind='lora'.*plain"):
        adapter_configs(kind="lora", plain=True)
