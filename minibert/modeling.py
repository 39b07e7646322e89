"""BERT (Devlin2019) on the autograd engine, with Hugging Face's module tree and parameter names.

Shape legend, used in every trailing comment of this package:
    B batch, T tokens, D hidden (hidden_size), H heads, Dh head dim (D / H), F intermediate,
    V vocabulary, P positions, M adapter bottleneck, L layers.
Weights keep the Hugging Face layout: `Linear.weight` is (out, in) and y = x @ W^T + b, so `state_dict()`
has exactly the keys and shapes of a transformers `BertModel` checkpoint and compares tensor for tensor.

Encoder layer (post-LN, Vaswani2017 §3.1 as BERT implements it):
    a = Dropout(Dense(SelfAttention(x)));   x' = LayerNorm(x + Adapter(a))
    f = Dropout(Dense(GELU(Dense(x'))));    y  = LayerNorm(x' + Adapter(f))
where `Adapter` is the identity unless an adapter is active in that slot (Houlsby2019 §2.1, Fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autograd.functional as F
from autograd import Tensor, nn, where
from minibert.config import BertConfig


def _linear(config: BertConfig, n_in: int, n_out: int, dtype, rng) -> nn.Linear:
    return nn.Linear(n_in, n_out, dtype=dtype, init_std=config.initializer_range, rng=rng)


class BertEmbeddings(nn.Module):
    """x = LayerNorm(word[ids] + position[pos] + token_type[types]), then dropout."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        std = config.initializer_range
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, dtype=dtype, init_std=std, rng=rng)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size, dtype=dtype,
                                                init_std=std, rng=rng)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size, dtype=dtype,
                                                  init_std=std, rng=rng)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)  # HF's name
        self.dropout = nn.Dropout(config.hidden_dropout_prob, rng=rng)

    def forward(self, input_ids, token_type_ids, position_ids):
        x = self.word_embeddings(input_ids)  # (B, T) -> (B, T, D)
        x = x + self.position_embeddings(position_ids)  # (B, T, D) + (B, T, D)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani2017 Eq. 1):
    softmax(Q K^T / sqrt(Dh) + mask) V, per head, with Q, K, V linear maps of the same x.

    Convention: the mask is additive, 0 for real tokens and the dtype's most negative finite number for
    padding (as transformers), so a padded key gets probability exactly 0 and no row can become NaN;
    None means no padding.
    """

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query = _linear(config, config.hidden_size, config.hidden_size, dtype, rng)
        self.key = _linear(config, config.hidden_size, config.hidden_size, dtype, rng)
        self.value = _linear(config, config.hidden_size, config.hidden_size, dtype, rng)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob, rng=rng)

    def split_heads(self, x):
        B, T, _ = x.shape
        return x.reshape(B, T, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)  # (B, T, D) -> (B, H, T, Dh)

    def forward(self, x, additive_mask):
        # Scaling q by 1/sqrt(Dh) before the product equals scaling the (B, H, T, T) scores, at a quarter the cost.
        q = self.split_heads(self.query(x)) * (self.head_dim ** -0.5)  # (B, H, T, Dh)
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        scores = q @ k.swapaxes(-1, -2)  # (B, H, T, Dh) @ (B, H, Dh, T) -> (B, H, T, T)
        probs = self.dropout(F.softmax(scores, axis=-1, mask=additive_mask))  # mask (B, 1, 1, T)
        context = probs @ v  # (B, H, T, T) @ (B, H, T, Dh) -> (B, H, T, Dh)
        B, H, T, Dh = context.shape
        return context.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)  # (B, H, T, Dh) -> (B, T, D)


class AdapterSlotMixin:
    """A place for named adapters between a sub-layer's dropout and its residual + LayerNorm.

    `self.adapters` holds adapter modules by name; `self.active_adapter` names the one applied (or None).
    An adapter is called as adapter(a, x) with a = Dropout(Dense(...)) the sub-layer output and x the
    sub-layer input, and returns the new `a` (see adapters/ for Houlsby's sequential and parallel forms).
    """

    def _init_adapter_slot(self):
        self.adapters = nn.ModuleDict()
        self.active_adapter = None

    def _apply_adapter(self, a, x):
        if self.active_adapter is None:
            return a
        return self.adapters[self.active_adapter](a, x)


class BertSelfOutput(nn.Module, AdapterSlotMixin):
    """y = LayerNorm(x + Adapter(Dropout(Dense(context))))."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.hidden_size, dtype, rng)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)
        self.dropout = nn.Dropout(config.hidden_dropout_prob, rng=rng)
        self._init_adapter_slot()

    def forward(self, context, x):
        a = self.dropout(self.dense(context))  # (B, T, D)
        return self.LayerNorm(x + self._apply_adapter(a, x))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.self = BertSelfAttention(config, dtype, rng)  # HF's name: attention.self.query ...
        self.output = BertSelfOutput(config, dtype, rng)

    def forward(self, x, additive_mask):
        return self.output(self.self(x, additive_mask), x)


class BertIntermediate(nn.Module):
    """h = act(Dense(x)), D -> F."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.intermediate_size, dtype, rng)
        self.act = F.activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))  # (B, T, D) -> (B, T, F)


class BertOutput(nn.Module, AdapterSlotMixin):
    """y = LayerNorm(x + Adapter(Dropout(Dense(h)))), F -> D."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.dense = _linear(config, config.intermediate_size, config.hidden_size, dtype, rng)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)
        self.dropout = nn.Dropout(config.hidden_dropout_prob, rng=rng)
        self._init_adapter_slot()

    def forward(self, h, x):
        f = self.dropout(self.dense(h))  # (B, T, F) -> (B, T, D)
        return self.LayerNorm(x + self._apply_adapter(f, x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.attention = BertAttention(config, dtype, rng)
        self.intermediate = BertIntermediate(config, dtype, rng)
        self.output = BertOutput(config, dtype, rng)

    def forward(self, x, additive_mask):
        x = self.attention(x, additive_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, dtype, rng) for _ in range(config.num_hidden_layers))

    def forward(self, x, additive_mask):
        hidden_states = [x]
        for layer in self.layer:
            x = layer(x, additive_mask)
            hidden_states.append(x)
        return hidden_states


class BertPooler(nn.Module):
    """pooled = tanh(Dense(h[:, 0])): the [CLS] vector through one dense layer."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.hidden_size, dtype, rng)

    def forward(self, h):
        return self.dense(h[:, 0]).tanh()  # (B, T, D) -> (B, D)


@dataclass
class BertModelOutput:
    last_hidden_state: Tensor        # (B, T, D)
    pooler_output: Tensor | None     # (B, D)
    hidden_states: tuple | None      # L + 1 tensors (B, T, D): embeddings, then each layer


def check_inputs(config: BertConfig, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
    """Validate and normalise the inputs of a forward pass; every error names the problem.

    Returns int64 arrays (B, T) input_ids, attention_mask, token_type_ids, position_ids. A 1-D input is
    taken as a batch of one.
    """
    def as_ids(name, value, upper):
        value = np.asarray(value.data if isinstance(value, Tensor) else value)
        if value.ndim == 1:
            value = value[None, :]
        if value.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, tokens), got {value.shape}")
        if value.dtype == bool:
            value = value.astype(np.int64)
        if not np.issubdtype(value.dtype, np.integer):
            raise TypeError(f"{name} must be integers, got dtype {value.dtype}")
        bad = (value < 0) | (value >= upper)
        if bad.any():
            b, t = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name}[{b}, {t}] = {int(value[b, t])} is out of range [0, {upper})")
        return value.astype(np.int64, copy=False)

    input_ids = as_ids("input_ids", input_ids, config.vocab_size)
    B, T = input_ids.shape
    if T > config.max_position_embeddings:
        raise ValueError(f"sequence length {T} exceeds max_position_embeddings {config.max_position_embeddings}; "
                         "truncate the input (the tokenizer's max_length)")
    if T == 0:
        raise ValueError("input_ids has no tokens")
    given = {"attention_mask": (attention_mask, 2), "token_type_ids": (token_type_ids, config.type_vocab_size),
             "position_ids": (position_ids, config.max_position_embeddings)}
    out = {}
    for name, (value, upper) in given.items():
        if value is None:
            continue
        value = as_ids(name, value, upper)
        if value.shape != (B, T):
            raise ValueError(f"{name} has shape {value.shape} but input_ids has shape {(B, T)}")
        out[name] = value
    attention_mask = out.get("attention_mask", np.ones((B, T), dtype=np.int64))
    token_type_ids = out.get("token_type_ids", np.zeros((B, T), dtype=np.int64))
    position_ids = out.get("position_ids", np.broadcast_to(np.arange(T, dtype=np.int64), (B, T)))
    return input_ids, attention_mask, token_type_ids, position_ids


class BertModel(nn.Module):
    """Embeddings, L post-LN encoder layers and the pooler, named as transformers' BertModel."""

    def __init__(self, config: BertConfig, dtype=np.float32, seed: int | None = 0, add_pooling_layer: bool = True):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.config = config
        self.embeddings = BertEmbeddings(config, dtype, rng)
        self.encoder = BertEncoder(config, dtype, rng)
        self.pooler = BertPooler(config, dtype, rng) if add_pooling_layer else None

    @property
    def dtype(self):
        return self.embeddings.word_embeddings.weight.dtype

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False) -> BertModelOutput:
        input_ids, attention_mask, token_type_ids, position_ids = check_inputs(
            self.config, input_ids, attention_mask, token_type_ids, position_ids)
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T) -> (B, T, D)
        # 0 where attending is allowed, the most negative finite number where the key is padding; None (no mask
        # to add) when nothing is padded.
        additive_mask = None
        if not attention_mask.all():
            padding = 1.0 - attention_mask[:, None, None, :].astype(self.dtype)  # (B, 1, 1, T)
            additive_mask = Tensor(padding * np.finfo(self.dtype).min)
        hidden_states = self.encoder(x, additive_mask)  # L + 1 tensors (B, T, D); mask (B, 1, 1, T)
        last = hidden_states[-1]
        return BertModelOutput(
            last_hidden_state=last,
            pooler_output=self.pooler(last) if self.pooler is not None else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
        )

    @classmethod
    def from_pretrained(cls, path=None, dtype=np.float32) -> BertModel:
        """Load a Hugging Face folder (config.json + model.safetensors); None = the embedded all-MiniLM-L6-v2."""
        from minibert.weights import load_pretrained
        return load_pretrained(cls, path, dtype)

    def save_pretrained(self, directory):
        """Write config.json + model.safetensors, readable by transformers' BertModel.from_pretrained."""
        from minibert.weights import save_pretrained
        return save_pretrained(self, directory)


@dataclass
class SequenceClassifierOutput:
    logits: Tensor                   # (B, num_labels)
    loss: Tensor | None = None       # scalar mean cross-entropy, when labels are given
    hidden_states: tuple | None = None


class BertForSequenceClassification(nn.Module):
    """logits = classifier(Dropout(pooler_output)); loss = cross-entropy(logits, labels) when labels are given.

    Parameter names equal transformers' BertForSequenceClassification: `bert.*`, `classifier.weight/bias`.
    """

    def __init__(self, config: BertConfig, dtype=np.float32, seed: int | None = 0):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, dtype, seed)
        rng = np.random.default_rng(None if seed is None else seed + 1)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p, rng=rng)
        self.classifier = _linear(config, config.hidden_size, config.num_labels, dtype, rng)

    @property
    def dtype(self):
        return self.bert.dtype

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states=False) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, D) -> (B, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, np.asarray(labels, dtype=np.int64).reshape(-1))
        return SequenceClassifierOutput(logits=logits, loss=loss, hidden_states=out.hidden_states)

    @classmethod
    def from_pretrained(cls, path=None, dtype=np.float32, num_labels: int | None = None, seed: int = 0):
        """Load the encoder (and the head when the checkpoint has one); a missing head is initialised."""
        from minibert.weights import load_pretrained
        return load_pretrained(cls, path, dtype, num_labels=num_labels, seed=seed)

    def save_pretrained(self, directory):
        from minibert.weights import save_pretrained
        return save_pretrained(self, directory)


def sentence_embeddings(model_output, attention_mask, normalize: bool = True) -> Tensor:
    """Mean of the token vectors over real (unpadded) tokens, optionally L2-normalised: (B, T, D) -> (B, D).

    This is how sentence-transformers embeds with all-MiniLM-L6-v2 (its Pooling module with mean
    tokens, then its Normalize module). Convention: the L2 norm is clamped below at 1e-12, as
    torch.nn.functional.normalize.
    """
    h = model_output.last_hidden_state if isinstance(model_output, BertModelOutput) else model_output
    mask = np.asarray(attention_mask, dtype=h.dtype)[:, :, None]  # (B, T, 1)
    summed = (h * mask).sum(axis=1)  # (B, T, D) -> (B, D)
    counts = np.maximum(mask.sum(axis=1), 1e-9)  # (B, 1); sentence-transformers clamps at 1e-9 too
    mean = summed / counts
    if not normalize:
        return mean
    norm = (mean * mean).sum(axis=-1, keepdims=True).sqrt()  # (B, 1)
    return mean / where(norm.data > 1e-12, norm, 1e-12)
