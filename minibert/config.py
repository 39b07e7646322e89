"""`BertConfig`: the hyper-parameters of a BERT, with Hugging Face's field names and defaults."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import autograd.functional as F


@dataclass
class BertConfig:
    """BERT hyper-parameters. Defaults are bert-base-uncased; all-MiniLM-L6-v2 is 384 / 6 / 12 / 1536."""

    vocab_size: int = 30522                  # V: rows of the word-embedding table
    hidden_size: int = 768                   # D: width of every token vector
    num_hidden_layers: int = 12              # L: encoder layers
    num_attention_heads: int = 12            # H: heads per attention; head dim Dh = D / H
    intermediate_size: int = 3072            # F: width of the feed-forward hidden layer
    hidden_act: str = "gelu"                 # "gelu" = exact erf GELU; "gelu_new" / "gelu_pytorch_tanh" = tanh form
    hidden_dropout_prob: float = 0.1         # dropout after embeddings and after each dense output
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512       # P: longest sequence the position table covers
    type_vocab_size: int = 2                 # segment ids (sentence A / B)
    initializer_range: float = 0.02          # std of the normal init of a freshly built model
    layer_norm_eps: float = 1e-12            # epsilon inside every LayerNorm (BERT uses 1e-12, not 1e-5)
    pad_token_id: int = 0
    classifier_dropout: float | None = None  # dropout before the classifier; None = hidden_dropout_prob
    num_labels: int = 2                      # outputs of the sequence-classification head
    extra: dict = field(default_factory=dict, repr=False)  # other config.json fields, kept for round trips

    def __post_init__(self):
        self.validate()

    def validate(self):
        problems = []
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not problems and self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                            f"{self.num_attention_heads}")
        try:  # the one activation registry (Hugging Face's names, and aliases such as "swish")
            F.canonical_activation(self.hidden_act)
        except ValueError as e:
            problems.append(f"hidden_act: {e}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.layer_norm_eps > 0:
            problems.append(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if problems:
            raise ValueError("invalid BertConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        """Build from a config.json dict; unknown fields are kept in `extra`, a non-BERT model_type is refused."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"this config is for model_type {model_type!r}, not 'bert'")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "num_labels"}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "id2label" in d:
            kwargs["num_labels"] = len(d["id2label"])
        elif "num_labels" in d:
            kwargs["num_labels"] = d["num_labels"]
        kwargs["extra"] = {k: v for k, v in d.items() if k not in known and k not in ("num_labels", "model_type")}
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path) -> BertConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no config.json at {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(d, dict) or "hidden_size" not in d:
            raise ValueError(f"{path} does not look like a BERT config.json (no hidden_size)")
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        """A config.json dict that transformers' BertConfig reads back."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "num_labels")}
        d.update({k: v for k, v in self.extra.items() if k not in ("id2label", "label2id")})
        d["model_type"] = "bert"
        labels = self.extra.get("id2label")
        if not isinstance(labels, dict) or len(labels) != self.num_labels:
            labels = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
        d["id2label"] = labels
        d["label2id"] = {name: int(i) for i, name in labels.items()}
        return d

    def to_json_file(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
