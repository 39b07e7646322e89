"""`BertConfig`: the hyper-parameters of a BERT, with Hugging Face's field names and defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import autograd.functional as F
from minibert.pretrained import read_json_object

# The fields that fix the shapes of the weights.
SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings", "type_vocab_size")


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
    pad_token_id: int | None = 0
    classifier_dropout: float | None = None  # dropout before the classifier; None = hidden_dropout_prob
    num_labels: int = 2                      # outputs of the sequence-classification head
    extra: dict = field(default_factory=dict, repr=False)  # other config.json fields, kept for round trips

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Every field checked by its type and range; one ValueError naming every bad field and its value."""
        problems = []
        for name in SIZE_FIELDS + ("num_labels",):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {_shown(value)}")
        if self.pad_token_id is not None and not (_is_int(self.pad_token_id) and self.pad_token_id >= 0):
            # transformers allows null (no padding token); nothing in this model reads it
            problems.append(f"pad_token_id must be a token id (an integer >= 0) or null, got "
                            f"{_shown(self.pad_token_id)}")
        if not problems and self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                            f"{self.num_attention_heads}")
        if not isinstance(self.hidden_act, str):
            problems.append(f"hidden_act must be an activation name (a string), got {_shown(self.hidden_act)}")
        else:
            try:  # the one activation registry (Hugging Face's names, and aliases such as "swish")
                F.canonical_activation(self.hidden_act)
            except ValueError as e:
                problems.append(f"hidden_act: {e}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if (value is not None or name != "classifier_dropout") and not (_is_number(value) and 0 <= value < 1):
                nullable = " (or null: use hidden_dropout_prob)" if name == "classifier_dropout" else ""
                problems.append(f"{name} must be a number in [0, 1){nullable}, got {_shown(value)}")
        if not (_is_number(self.layer_norm_eps) and self.layer_norm_eps > 0):
            problems.append(f"layer_norm_eps must be a positive number, got {_shown(self.layer_norm_eps)}")
        if not (_is_number(self.initializer_range) and self.initializer_range >= 0):
            problems.append(f"initializer_range must be a number >= 0, got {_shown(self.initializer_range)}")
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
            if not isinstance(d["id2label"], dict) or not d["id2label"]:
                raise ValueError(f"invalid BertConfig: id2label must be an object of class names by index, got "
                                 f"{_shown(d['id2label'])}")
            kwargs["num_labels"] = len(d["id2label"])
        elif "num_labels" in d:
            kwargs["num_labels"] = d["num_labels"]
        kwargs["extra"] = {k: v for k, v in d.items() if k not in known and k not in ("num_labels", "model_type")}
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path) -> BertConfig:
        """Read a config.json; every problem is one ValueError naming the file and the field.

        The sizes (SIZE_FIELDS) are required here although the dataclass has defaults: a file goes with weights
        of those sizes, and bert-base's defaults in place of a missing one would only show up later as dozens of
        missing or mis-shaped tensors.
        """
        path = Path(path)
        d = read_json_object(path, "model config (config.json)")
        if d.get("model_type", "bert") == "bert":
            missing = [name for name in SIZE_FIELDS if name not in d]
            if missing:
                raise ValueError(f"{path}: no {', '.join(missing)}: a BERT config.json states the sizes of the "
                                 "weights it goes with (HF's BertConfig.save_pretrained writes them all)")
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a size


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value) -> str:
    """A value as a config.json states it, with its JSON type: the string "0.1" is not the number 0.1."""
    kinds = {str: "a string", bool: "a boolean", list: "an array", dict: "an object", float: "a number",
             int: "a number"}
    if value is None:
        return "null"
    return f"{json.dumps(value)} ({kinds[type(value)]})" if type(value) in kinds else repr(value)
