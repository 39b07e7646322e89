"""autograd.nn: registration and dotted names, state dicts and their checked loading, modes, dtypes, layers."""

import numpy as np
import pytest
from autograd_helpers import check_grads

import autograd.functional as F
from autograd import Tensor, nn


class Block(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.dense = nn.Linear(4, 3, rng=rng)
        self.LayerNorm = nn.LayerNorm(3)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.not_a_parameter = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
        self.dropout = nn.Dropout(0.5, rng=rng)

    def forward(self, x):
        return self.dropout(self.LayerNorm(self.dense(x))) * self.scale


class Model(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(7, 4, rng=rng)
        self.layer = nn.ModuleList([Block(rng), Block(rng)])
        self.heads = nn.ModuleDict({"cls": nn.Linear(3, 2, rng=rng), "tag": nn.Linear(3, 5, bias=False, rng=rng)})
        self.mlp = nn.Sequential(nn.Linear(3, 6, rng=rng), nn.Linear(6, 3, rng=rng))


EXPECTED_NAMES = ["embed.weight"] + [
    f"layer.{i}.{n}" for i in range(2)
    for n in ("scale", "dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias")
] + ["heads.cls.weight", "heads.cls.bias", "heads.tag.weight",
     "mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias"]


def test_named_parameters_are_dotted_and_in_creation_order():
    model = Model()
    assert [name for name, _ in model.named_parameters()] == EXPECTED_NAMES
    assert list(model.state_dict()) == EXPECTED_NAMES
    assert all(model.state_dict()[n] is p.data for n, p in model.named_parameters())  # arrays, not copies


def test_attribute_registration_follows_assignment():
    block = Block(np.random.default_rng(0))
    assert "not_a_parameter" not in dict(block.named_parameters())  # a plain Tensor is not registered
    block.scale = None  # reassigning unregisters
    block.extra = nn.Linear(2, 2)
    del block.dense
    assert [n for n, _ in block.named_parameters()] == ["LayerNorm.weight", "LayerNorm.bias",
                                                        "extra.weight", "extra.bias"]
    assert [n for n, _ in block.named_modules()] == ["", "LayerNorm", "dropout", "extra"]


def test_module_without_super_init_fails_loudly():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1))

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_shared_parameter_is_yielded_once():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.bias"]
    assert model.num_parameters() == 9 + 3 + 3


def test_linear_layout_is_out_by_in():
    layer = nn.Linear(4, 3, rng=np.random.default_rng(0))
    assert layer.weight.shape == (3, 4) and layer.bias.shape == (3,)
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    layer.bias.data[:] = [1, 2, 3]
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-6)


def test_load_state_dict_strict_reports_every_problem_at_once():
    model = Model()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    del state["embed.weight"], state["mlp.1.bias"]
    state["layer.0.dense.weight"] = np.zeros((4, 3))  # transposed
    state["pooler.weight"] = np.zeros(1)
    state["heads.cls.extra"] = np.zeros(1)
    before = model.layer[1].scale.data.copy()
    state["layer.1.scale"] = before + 5
    with pytest.raises(KeyError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    for key in ["embed.weight", "mlp.1.bias", "layer.0.dense.weight", "(4, 3)", "(3, 4)", "pooler.weight",
                "heads.cls.extra", "missing (2)", "unexpected (2)", "mis-shaped"]:
        assert key in message, key
    np.testing.assert_array_equal(model.layer[1].scale.data, before)  # checked before anything is copied


def test_load_state_dict_non_strict_returns_missing_and_unexpected():
    source, target = Model(seed=1), Model(seed=2)
    state = dict(source.state_dict())
    del state["embed.weight"]
    state["pooler.weight"] = np.zeros(1)
    missing, unexpected = target.load_state_dict(state, strict=False)
    assert missing == ["embed.weight"] and unexpected == ["pooler.weight"]
    assert not np.array_equal(target.embed.weight.data, source.embed.weight.data)
    np.testing.assert_array_equal(target.mlp[1].weight.data, source.mlp[1].weight.data)
    assert target.mlp[1].weight.data is not source.mlp[1].weight.data  # copied in
    state["mlp.1.bias"] = np.zeros(4)
    with pytest.raises(KeyError, match="mis-shaped"):  # shapes are checked even when not strict
        target.load_state_dict(state, strict=False)


def test_load_state_dict_casts_to_the_parameter_dtype():
    model = nn.Linear(2, 2)
    model.load_state_dict({"weight": np.eye(2, dtype=np.float64), "bias": np.ones(2)})
    assert model.weight.dtype == np.float32 and model.bias.dtype == np.float32


def test_train_and_eval_propagate_to_every_submodule():
    model = Model()
    assert all(m.training for _, m in model.named_modules())
    assert model.eval() is model
    assert not any(m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_dropout_is_identity_in_eval_and_drops_in_train():
    drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
    x = Tensor(np.ones((4, 8), dtype=np.float32))
    assert drop.eval()(x) is x
    y = drop.train()(x).data
    assert set(np.unique(y)) == {0.0, 2.0}


def test_requires_grad_and_trainable_count():
    model = Model()
    total = model.num_parameters()
    assert total == 7 * 4 + 2 * (1 + 12 + 3 + 3 + 3) + (6 + 2) + 15 + (18 + 6) + (18 + 3)
    model.requires_grad_(False)
    model.heads.requires_grad_(True)
    assert model.num_parameters(trainable_only=True) == 6 + 2 + 15
    assert model.num_parameters() == total
    assert not model.embed.weight.requires_grad and model.heads["tag"].weight.requires_grad


def test_astype_converts_every_parameter_and_drops_grads():
    model = Model()
    model.embed.weight.grad = np.ones((7, 4), dtype=np.float32)
    assert model.astype(np.float64) is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.embed.weight.grad is None
    assert isinstance(model.layer[0].dense.weight, nn.Parameter)  # the same objects, converted in place


def test_module_dict_and_list_access():
    model = Model()
    assert "cls" in model.heads and list(model.heads) == ["cls", "tag"] and len(model.heads) == 2
    assert model.layer[-1] is list(model.layer)[1] and len(model.layer) == 2
    with pytest.raises(TypeError, match="Modules"):
        model.heads["bad"] = np.ones(2)
    del model.heads["tag"]
    assert "heads.tag.weight" not in dict(model.named_parameters())


def test_parameter_must_be_floating_point():
    with pytest.raises(TypeError, match="floating"):
        nn.Parameter(np.arange(3))


# ---- layers against their formulas, dtype round trip ------------------------------------------------------
def test_embedding_layer_norm_and_sequential_modules():
    rng = np.random.default_rng(29)
    emb = nn.Embedding(5, 3, dtype=np.float64, rng=rng)
    ids = np.array([[4, 0], [4, 4]])
    np.testing.assert_array_equal(emb(ids).data, emb.weight.data[ids])
    check_grads(lambda w: F.embedding(ids, w), emb.weight)

    norm = nn.LayerNorm(3, eps=1e-5, dtype=np.float64)
    assert norm.weight.shape == norm.bias.shape == (3,) and norm.eps == 1e-5
    x = rng.standard_normal((2, 3))
    xc = x - x.mean(-1, keepdims=True)
    np.testing.assert_allclose(norm(Tensor(x)).data, xc / np.sqrt((xc**2).mean(-1, keepdims=True) + 1e-5),
                               rtol=1e-12, atol=1e-14)

    seq = nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=np.float64), nn.Linear(4, 2, rng=rng, dtype=np.float64))
    expected = (x @ seq[0].weight.data.T + seq[0].bias.data) @ seq[1].weight.data.T + seq[1].bias.data
    np.testing.assert_allclose(seq(Tensor(x)).data, expected, rtol=1e-12)
    assert seq.parameters() == [p for _, p in seq.named_parameters()]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert all(type(v) is np.ndarray for v in seq.state_dict().values())
    assert seq.requires_grad_(False) is seq and seq.num_parameters(trainable_only=True) == 0


def test_module_astype_round_trip_keeps_values():
    layer = nn.Linear(3, 2, rng=np.random.default_rng(30))
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    layer.astype(np.float64).astype(np.float32)
    for k, v in layer.state_dict().items():
        assert v.dtype == np.float32 and np.array_equal(v, before[k])
