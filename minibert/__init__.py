"""BERT on the `autograd` engine: loads Hugging Face weights and matches transformers numerically.

    from minibert import BertConfig, BertModel, BertForSequenceClassification, Tokenizer
    model = BertModel.from_pretrained()          # the embedded all-MiniLM-L6-v2
    tok = Tokenizer.from_pretrained()
    out = model(**tok(["a sentence"]))
"""

from minibert.config import BertConfig
from minibert.modeling import (
    BertForSequenceClassification,
    BertModel,
    BertModelOutput,
    SequenceClassifierOutput,
    sentence_embeddings,
)

__all__ = ["BertConfig", "BertModel", "BertForSequenceClassification", "BertModelOutput",
           "SequenceClassifierOutput", "Tokenizer", "sentence_embeddings"]


def __getattr__(name):
    # The tokenizer needs the `tokenizers` package; import it only when asked for.
    if name == "Tokenizer":
        from minibert.tokenization import Tokenizer
        return Tokenizer
    raise AttributeError(f"module 'minibert' has no attribute {name!r}")
