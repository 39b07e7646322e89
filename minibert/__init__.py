"""BERT on the `autograd` engine: loads Hugging Face weights and matches transformers numerically.

    from minibert import BertConfig, BertModel, BertForSequenceClassification, Tokenizer
    model = BertModel.from_pretrained()          # the embedded all-MiniLM-L6-v2
    tok = Tokenizer.from_pretrained()
    out = model(**tok(["a sentence"]))
"""

# First, before `autograd` is imported: is every package of this project the one Python imports? (environment.py)
from minibert.environment import check_packages, source_tree_packages

check_packages(source_tree_packages() or ("autograd",))

from minibert.config import BertConfig  # noqa: E402
from minibert.modeling import (  # noqa: E402
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
