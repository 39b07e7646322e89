"""BERT (Devlin2019) on the autograd engine, with Hugging Face's module tree and parameter names.

Shape legend, used in every trailing comment of this package:
    B batch, T tokens, D hidden (hidden_size), H heads, Dh head dim (D / H), F intermediate,
    V vocabulary, P positions, L layers.
Weights keep the Hugging Face layout: `Linear.weight` is (out, in) and y = x @ W^T + b, so `state_dict()`
has exactly the keys and shapes of a transformers `BertModel` checkpoint and compares tensor for tensor.

Encoder layer (post-LN, Vaswani2017 §3.1 as BERT implements it):
    a = Dropout(Dense(SelfAttention(x)));   x' = LayerNorm(x + a)
    f = Dropout(Dense(GELU(Dense(x'))));    y  = LayerNorm(x' + f)
where each `LayerNorm(x + .)` is a hook's to replace once a module has been attached there (see
`SublayerOutput`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autograd.functional as F
from autograd import Tensor, concatenate, nn, where
from minibert.config import BertConfig


def _linear(config: BertConfig, n_in: int, n_out: int, dtype, rng) -> nn.Linear:
    return nn.Linear(n_in, n_out, dtype=dtype, init_std=config.initializer_range, rng=rng)


class BertEmbeddings(nn.Module):
    """x = LayerNorm(word[ids] + position[pos] + token_type[types]), then dropout.

    Ref: Devlin2019 §3, Fig. 2 (input representation).
    Convention: `hook` is one generic slot on the ids the lookup uses, for methods that change what the model is
    given rather than its weights: None (the default) leaves the ids as they are and supplies nothing else;
    otherwise a function (input_ids, token_type_ids, position_ids) -> (token_type_ids, position_ids, past) on ids
    (B, T), where past is None or one pair (keys, values) per encoder layer, each (B, H, P, Dh), that every query
    of that layer attends to before the input's own keys (see `BertSelfAttention`). `BertModel` asks it through
    `prepare` before the lookup. Whoever sets the hook registers the module behind it.
    """

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
        self.hook = None

    def prepare(self, input_ids, token_type_ids, position_ids):
        """(token_type_ids, position_ids, past) of this forward pass: the hook's, or the ids unchanged and no past."""
        if self.hook is None:
            return token_type_ids, position_ids, None
        return self.hook(input_ids, token_type_ids, position_ids)

    def forward(self, input_ids, token_type_ids, position_ids):
        x = self.word_embeddings(input_ids)  # (B, T) -> (B, T, D)
        x = x + self.position_embeddings(position_ids)  # (B, T, D) + (B, T, D)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention: softmax(Q K^T / sqrt(Dh) + mask) V, per head, with Q, K, V
    linear maps of the same x.

    Ref: Vaswani2017 Eq. 1 and §3.2.2 (multi-head).

    Convention: the mask is additive, 0 for real tokens and the dtype's most negative finite number for
    padding (as transformers), so a padded key gets probability exactly 0 and no row can become NaN;
    None means no padding.
    Convention: `past` is None (the default: the T keys and values of x alone) or a pair (keys, values), each
    (B, H, P, Dh) per head, put before the input's own along the key axis, as transformers' past_key_values (its
    cache order): K = [K_past ; x Wk^T + bk], V = [V_past ; x Wv^T + bv], (B, H, P + T, Dh). Queries come from the
    T tokens only, so the output stays (B, T, D); the mask must then cover the P + T keys (BertModel widens it).
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

    def forward(self, x, additive_mask, past=None):
        # Scaling q by 1/sqrt(Dh) before the product equals scaling the (B, H, T, T) scores, at a quarter the cost.
        q = self.split_heads(self.query(x)) * (self.head_dim ** -0.5)  # (B, H, T, Dh)
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        if past is not None:  # P keys and values before the input's own (the Convention above)
            k = concatenate([past[0], k], axis=2)  # (B, H, P, Dh) ; (B, H, T, Dh) -> (B, H, P + T, Dh)
            v = concatenate([past[1], v], axis=2)
        # S keys below: S = T, or P + T with past
        scores = q @ k.swapaxes(-1, -2)  # (B, H, T, Dh) @ (B, H, Dh, S) -> (B, H, T, S)
        probs = self.dropout(F.softmax(scores, axis=-1, mask=additive_mask))  # mask (B, 1, 1, S)
        context = probs @ v  # (B, H, T, S) @ (B, H, S, Dh) -> (B, H, T, Dh)
        B, H, T, Dh = context.shape
        return context.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)  # (B, H, T, Dh) -> (B, T, D)


class SublayerOutput(nn.Module):
    """The output half of a sub-layer with its residual:  y = LayerNorm(x + Dropout(Dense(h))).

    Ref: Vaswani2017 §3.1 (residual, then LayerNorm); Houlsby2019 §2.1, Fig. 2 (what goes in the hook).
    Convention: `hook` is one generic slot after the sub-layer's dropout, where parameter-efficient methods
    insert their modules: a function (a, x, norm) -> y of the sub-layer output a (B, T, D), the sub-layer input
    x (B, T, D) and this sub-layer's own LayerNorm, returning what the sub-layer outputs; None (the default) is
    y = norm(x + a). Handing over the norm lets a method apply it where it needs. Whoever sets a hook registers
    the module behind it under a name of its choosing, so its parameters get dotted names; the model itself never
    looks at them.
    """

    def __init__(self, config: BertConfig, n_in: int, dtype=np.float32, rng=None):
        super().__init__()
        self.dense = _linear(config, n_in, config.hidden_size, dtype, rng)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)  # HF's name
        self.dropout = nn.Dropout(config.hidden_dropout_prob, rng=rng)
        self.hook = None

    def forward(self, h, x):
        a = self.dropout(self.dense(h))  # (B, T, D or F) -> (B, T, D)
        if self.hook is not None:
            return self.hook(a, x, self.LayerNorm)
        return self.LayerNorm(x + a)


class BertSelfOutput(SublayerOutput):
    """After attention: y = LayerNorm(x + hook(Dropout(Dense(context)), x)), D -> D."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__(config, config.hidden_size, dtype, rng)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.self = BertSelfAttention(config, dtype, rng)  # HF's name: attention.self.query ...
        self.output = BertSelfOutput(config, dtype, rng)

    def forward(self, x, additive_mask, past=None):
        return self.output(self.self(x, additive_mask, past), x)


class BertIntermediate(nn.Module):
    """h = act(Dense(x)), D -> F."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.intermediate_size, dtype, rng)
        self.act = F.activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))  # (B, T, D) -> (B, T, F)


class BertOutput(SublayerOutput):
    """After the feed-forward network: y = LayerNorm(x + hook(Dropout(Dense(h)), x)), F -> D."""

    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__(config, config.intermediate_size, dtype, rng)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.attention = BertAttention(config, dtype, rng)
        self.intermediate = BertIntermediate(config, dtype, rng)
        self.output = BertOutput(config, dtype, rng)

    def forward(self, x, additive_mask, past=None):
        x = self.attention(x, additive_mask, past)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig, dtype=np.float32, rng=None):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, dtype, rng) for _ in range(config.num_hidden_layers))

    def forward(self, x, additive_mask, past=None):
        """past: None, or one (keys, values) pair per layer (BertSelfAttention)."""
        hidden_states = [x]
        for i, layer in enumerate(self.layer):
            x = layer(x, additive_mask, None if past is None else past[i])
            hidden_states.append(x)
        return hidden_states


class BertPooler(nn.Module):
    """pooled = tanh(Dense(h[:, 0])): the [CLS] vector through one dense layer.

    Ref: Devlin2019 §3 ([CLS] as the aggregate representation); the tanh layer is BERT's released code.
    """

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


def additive_mask(attention_mask, dtype) -> np.ndarray:
    """BERT's additive attention mask (B, 1, 1, T) from a 0/1 mask (B, T): 0 where attending is allowed, the
    dtype's most negative finite number where the key is padding (None is passed instead when nothing is)."""
    padding = 1.0 - np.asarray(attention_mask)[:, None, None, :].astype(dtype)
    return padding * np.finfo(dtype).min


def encoder_mask(attention_mask, past, dtype):
    """The additive mask every attention of the encoder takes: (B, 1, 1, T), or (B, 1, 1, P + T) with P past keys;
    None when nothing is padded. Convention: past keys are visible to every query, padding rows too (additive 0),
    as transformers sees them when the mask it is given covers them with ones."""
    attention_mask = np.asarray(attention_mask)
    if attention_mask.all():
        return None
    mask = additive_mask(attention_mask, dtype)  # (B, 1, 1, T)
    if past is not None:
        visible = np.zeros(mask.shape[:3] + (past[0][0].shape[2],), dtype=mask.dtype)  # (B, 1, 1, P)
        mask = np.concatenate([visible, mask], axis=-1)  # (B, 1, 1, P + T)
    return Tensor(mask)


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
    if B == 0:
        raise ValueError("input_ids is an empty batch (0 rows)")
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


def check_labels(labels, batch_size: int, num_labels: int) -> np.ndarray:
    """Class labels as int64 (B,): integers in [0, num_labels), one per row. A float label such as 0.5 is an
    error, never truncated: a quietly rounded label trains the wrong thing."""
    raw = np.asarray(labels.data if isinstance(labels, Tensor) else labels).reshape(-1)
    if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise TypeError(f"labels must be integers, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating) and not np.array_equal(raw, np.round(raw)):
        raise ValueError(f"labels must be whole numbers (class indices), got {raw[raw != np.round(raw)][:3]}")
    if raw.shape != (batch_size,):
        raise ValueError(f"got {raw.size} labels for a batch of {batch_size}")
    bad = (raw < 0) | (raw >= num_labels)
    if bad.any():
        raise ValueError(f"label {raw[bad][0]} is out of range for {num_labels} classes")
    return raw.astype(np.int64)


class BertModel(nn.Module):
    """Embeddings, L post-LN encoder layers and the pooler, named as transformers' BertModel.

    Ref: Devlin2019 §3; Vaswani2017 §3.1 (the encoder layer).
    """

    def __init__(self, config: BertConfig, dtype=np.float32, seed: int | None = 0, add_pooling_layer: bool = True):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.config = config
        self.embeddings = BertEmbeddings(config, dtype, rng)
        self.encoder = BertEncoder(config, dtype, rng)
        self.pooler = BertPooler(config, dtype, rng) if add_pooling_layer else None
        # The parameters of the architecture itself: what a Hugging Face checkpoint holds and save_pretrained
        # writes. Modules attached later through a hook are not among them.
        self.checkpoint_names = frozenset(name for name, _ in self.named_parameters())

    @property
    def dtype(self):
        return self.embeddings.word_embeddings.weight.dtype

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False) -> BertModelOutput:
        input_ids, attention_mask, token_type_ids, position_ids = check_inputs(
            self.config, input_ids, attention_mask, token_type_ids, position_ids)
        # The embeddings' hook may renumber the positions, replace the token types and supply past keys and values
        # (BertEmbeddings); without one this is the ids as given and past None.
        token_type_ids, position_ids, past = self.embeddings.prepare(input_ids, token_type_ids, position_ids)
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T) -> (B, T, D)
        mask = encoder_mask(attention_mask, past, self.dtype)
        hidden_states = self.encoder(x, mask, past)  # L + 1 tensors (B, T, D); mask (B, 1, 1, T), or P + T
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

    Ref: Devlin2019 §4.1 (a classification layer on the final [CLS] representation).
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
        # The parameters of the architecture itself: what a Hugging Face checkpoint holds and save_pretrained
        # writes. Modules attached later through a hook are not among them.
        self.checkpoint_names = frozenset(name for name, _ in self.named_parameters())

    @property
    def dtype(self):
        return self.bert.dtype

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states=False) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, D) -> (B, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, check_labels(labels, logits.shape[0], self.config.num_labels))
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

    Ref: Reimers2019 §3 (mean pooling). This is how sentence-transformers embeds with all-MiniLM-L6-v2 (its
    Pooling module with mean
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
