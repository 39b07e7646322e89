"""BERT tokenization: text -> (input_ids, token_type_ids, attention_mask), on Hugging Face's `tokenizers`.

WordPiece itself is never re-implemented here: the `tokenizers` library does the normalising, splitting,
sub-word lookup, special tokens and truncation, so ids match transformers' fast tokenizers exactly.
This module only chooses the settings, checks the inputs and lays the result out as NumPy arrays.

    tok = Tokenizer.from_pretrained()                      # embedded all-MiniLM-L6-v2
    enc = tok(["Hello, world!", "A longer second sentence."])
    enc["input_ids"].shape                                 # (2, 8): padded to the longest row
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minibert.pretrained import ModelNotFoundError, read_json_object, resolve_model_dir

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# BERT's special tokens, as named in Hugging Face folders; a folder's own config may rename them.
DEFAULT_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                          "cls_token": "[CLS]", "mask_token": "[MASK]"}


class Encoding(dict):
    """A batch ready for the model: `input_ids`, `token_type_ids`, `attention_mask`, each (batch, length).

    A dict, so that `model(**tok(texts))` and `enc["input_ids"]` work as with transformers; the three
    arrays are also attributes.
    Convention: int64 arrays (what transformers returns and what embedding lookups index with).
    """

    @property
    def input_ids(self) -> np.ndarray:
        return self["input_ids"]

    @property
    def token_type_ids(self) -> np.ndarray:
        return self["token_type_ids"]

    @property
    def attention_mask(self) -> np.ndarray:
        return self["attention_mask"]


def _read_json(path: Path) -> dict:
    """A small JSON config, or {} when the file is absent; a ValueError naming the file if it is damaged."""
    return read_json_object(path, f"tokenizer settings ({path.name})") if path.exists() else {}


def _backend_read(file: Path, what: str, read):
    """read(str(file)), with the `tokenizers` library's errors (plain Exceptions, their message without the
    file) as one ValueError naming the file."""
    try:
        return read(str(file))
    except Exception as e:  # tokenizers raises bare Exception for a file it cannot parse
        raise ValueError(f"{file}: not a readable {what}: {e}") from None


def _token_text(value):
    """Special tokens are stored either as a string or as {"content": "[CLS]", ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _special_tokens(folder: Path) -> dict:
    """The special-token strings a folder's special_tokens_map.json and tokenizer_config.json set (the files
    transformers reads); only those found, later files winning."""
    tokens = {}
    for name in (SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE):
        config = _read_json(folder / name)
        for key in DEFAULT_SPECIAL_TOKENS:
            if isinstance(_token_text(config.get(key)), str):
                tokens[key] = _token_text(config[key])
    return tokens


def _bert_backend_from_vocab(vocab_file: Path, config: dict, special: dict):
    """A `tokenizers` BERT WordPiece pipeline built from vocab.txt, configured as transformers'
    BertTokenizerFast would be from the same folder."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = _backend_read(vocab_file, "WordPiece vocabulary (one token per line, UTF-8)", WordPiece.read_file)
    required = [special[k] for k in ("unk_token", "cls_token", "sep_token", "pad_token")]
    missing = [t for t in required if t not in vocab]
    if missing:
        raise ValueError(f"{vocab_file} lacks the special token(s) {missing}; is it a BERT vocabulary?")
    backend = Backend(WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    # Convention: lowercase unless tokenizer_config.json says do_lower_case=false (BERT's "uncased" default);
    # strip_accents=None means "strip accents exactly when lowercasing", as in BERT.
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = special["cls_token"], special["sep_token"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # Registered as special so that "[SEP]" typed in a text stays one token and decode can skip them.
    backend.add_special_tokens([t for t in dict.fromkeys(special.values()) if t in vocab])
    return backend


class Tokenizer:
    """Turns texts (or text pairs) into the int64 arrays a BERT model takes.

    Wraps a `tokenizers.Tokenizer` (the "backend", which it then owns and reconfigures); usually built with
    `Tokenizer.from_pretrained`. special_tokens overrides the BERT names ({"pad_token": "[PAD]", ...}).
    Any padding or truncation stored in tokenizer.json is switched off: each call pads and truncates
    exactly as its arguments say, and nothing else.
    """

    def __init__(self, backend, special_tokens: dict | None = None, source: str | None = None):
        special = dict(DEFAULT_SPECIAL_TOKENS)
        if backend.padding and backend.padding.get("pad_token"):
            special["pad_token"] = backend.padding["pad_token"]  # what tokenizer.json pads with
        special.update(special_tokens or {})
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.source = source
        self.special_tokens = special
        ids = {}
        for key in ("pad_token", "cls_token", "sep_token"):
            ids[key] = backend.token_to_id(special[key])
            if ids[key] is None:
                raise ValueError(f"the tokenizer has no {key} {special[key]!r} in its vocabulary")
        self.pad_token_id = ids["pad_token"]
        self.cls_token_id = ids["cls_token"]
        self.sep_token_id = ids["sep_token"]
        self.pad_token = special["pad_token"]
        # Convention: padding positions get token type 0 and attention 0, as in transformers' BERT.
        self.pad_token_type_id = 0

    @classmethod
    def from_pretrained(cls, path=None) -> Tokenizer:
        """Load from a model folder (default: the embedded all-MiniLM-L6-v2), or from a tokenizer.json or
        vocab.txt file given directly.

        A folder's tokenizer.json is preferred (it is the complete pipeline transformers saved); without one,
        vocab.txt is built into a standard BERT WordPiece pipeline, lowercasing per tokenizer_config.json's
        `do_lower_case` (default True). Never touches the network.
        """
        given = Path(path).expanduser() if path is not None else None
        if given is not None and given.is_file():
            folder, files = given.parent, [given]
        else:
            folder = resolve_model_dir(path)
            files = [folder / TOKENIZER_FILE, folder / VOCAB_FILE]
        special = _special_tokens(folder)
        for file in files:
            if not file.is_file():
                continue
            if file.suffix == ".json":
                from tokenizers import Tokenizer as Backend

                backend = _backend_read(file, "tokenizer.json (as tokenizers' Tokenizer.save writes it)",
                                        Backend.from_file)
                return cls(backend, special, source=str(file))
            config = _read_json(folder / TOKENIZER_CONFIG_FILE)
            backend = _bert_backend_from_vocab(file, config, {**DEFAULT_SPECIAL_TOKENS, **special})
            return cls(backend, special, source=str(file))
        raise ModelNotFoundError(f"no tokenizer in {folder}: expected {TOKENIZER_FILE} or {VOCAB_FILE}")

    @property
    def vocab_size(self) -> int:
        """Number of token ids, including added special tokens (the embedding table's row count)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def num_special_tokens(self, pair: bool = False) -> int:
        """How many special tokens one sequence gets: 2 for [CLS] A [SEP], 3 for [CLS] A [SEP] B [SEP]."""
        processor = self.backend.post_processor
        return processor.num_special_tokens_to_add(pair) if processor is not None else 0

    def __call__(self, texts, text_pairs=None, padding=True, truncation=True,
                 max_length: int | None = 128) -> Encoding:
        """Tokenize a batch into an Encoding of int64 arrays of shape (batch, length).

        texts: a str (a batch of one) or a list of str. text_pairs: None, or as many second segments as
        texts; a pair becomes [CLS] A [SEP] B [SEP] with token_type_ids 0 for "[CLS] A [SEP]" and 1 after.
        An empty B is still a pair ([CLS] A [SEP] [SEP]), as in transformers' batch call.
        padding: True / "longest" pads to the longest row, "max_length" pads to max_length, False requires
        all rows to have the same length already.
        truncation: True / "longest_first" cuts rows to max_length tokens (special tokens included), False
        leaves them whole.
        Convention: pad on the right, so real tokens keep positions 0, 1, 2, ... as in pre-training.
        Convention: pairs are truncated longest_first (one token at a time from whichever segment is longer),
        as transformers does by default.
        """
        texts, text_pairs = self._check_texts(texts, text_pairs)
        pair = text_pairs is not None
        pad_to = self._check_options(padding, truncation, max_length, pair)

        if truncation and max_length is not None:
            self.backend.enable_truncation(max_length, strategy="longest_first")
        else:
            self.backend.no_truncation()
        try:
            inputs = list(zip(texts, text_pairs)) if pair else texts
            encoded = self.backend.encode_batch(inputs, add_special_tokens=True)
        finally:
            self.backend.no_truncation()

        lengths = [len(e.ids) for e in encoded]
        if pad_to == "longest":
            width = max(lengths)
        elif pad_to == "max_length":
            width = max_length
            if max(lengths) > width:
                raise ValueError(f"row {int(np.argmax(lengths))} has {max(lengths)} tokens, more than "
                                 f"max_length={max_length}; pass truncation=True to cut it")
        else:
            width = lengths[0]
            if any(n != width for n in lengths):
                raise ValueError(f"rows have different lengths ({min(lengths)} to {max(lengths)} tokens) "
                                 "and padding=False; pass padding=True (pad to the longest) or "
                                 "padding='max_length'")

        batch = len(encoded)
        input_ids = np.full((batch, width), self.pad_token_id, dtype=np.int64)
        token_type_ids = np.full((batch, width), self.pad_token_type_id, dtype=np.int64)
        attention_mask = np.zeros((batch, width), dtype=np.int64)
        for row, (e, n) in enumerate(zip(encoded, lengths)):
            input_ids[row, :n] = e.ids
            token_type_ids[row, :n] = e.type_ids
            attention_mask[row, :n] = 1
        return Encoding(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)

    def encode(self, text: str, text_pair: str | None = None) -> list[int]:
        """The ids of one text (or pair) with its special tokens; no padding, no truncation."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str, got {type(text).__name__}; "
                            "call the tokenizer itself for a batch")
        enc = self(text, text_pair, padding=False, truncation=False, max_length=None)
        return enc["input_ids"][0].tolist()

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Ids back to text. WordPiece loses case, accents and spacing, so this is not an exact inverse."""
        return self.backend.decode(self._id_list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids):
        """Ids -> token strings ("##" marks a word continuation); one int gives one string."""
        if isinstance(ids, (int, np.integer)):
            return self.convert_ids_to_tokens([ids])[0]
        tokens = []
        for i in self._id_list(ids):
            token = self.backend.id_to_token(i)
            if token is None:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            tokens.append(token)
        return tokens

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, pad={self.pad_token!r}->{self.pad_token_id}, "
                f"cls={self.cls_token_id}, sep={self.sep_token_id}, source={self.source!r})")

    # -- input checks -------------------------------------------------------------------------------------

    @staticmethod
    def _id_list(ids) -> list[int]:
        """A 1-D sequence of ids (list, tuple or array) as plain Python ints, which `tokenizers` requires."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"expected one sequence of ids (1-D), got shape {arr.shape}; "
                             "decode rows one by one")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        return [int(i) for i in arr]

    @staticmethod
    def _check_texts(texts, text_pairs):
        """Normalise to lists of str (a single str is a batch of one), naming the first bad item."""
        single = isinstance(texts, str)
        texts = [texts] if single else texts
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        if len(texts) == 0:
            raise ValueError("texts is empty; give at least one text")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
        if text_pairs is None:
            return list(texts), None
        if isinstance(text_pairs, str):
            if not single:
                raise TypeError("text_pairs is a single str but texts is a list; "
                                "give a list of the same length")
            text_pairs = [text_pairs]
        if not isinstance(text_pairs, (list, tuple)):
            raise TypeError(f"text_pairs must be None or a list of str, got {type(text_pairs).__name__}")
        if len(text_pairs) != len(texts):
            raise ValueError(f"text_pairs has {len(text_pairs)} items but texts has {len(texts)}; "
                             "give one second segment per text")
        for i, t in enumerate(text_pairs):
            if not isinstance(t, str):
                raise TypeError(f"text_pairs[{i}] is {type(t).__name__}, expected str")
        return list(texts), list(text_pairs)

    def _check_options(self, padding, truncation, max_length, pair: bool) -> str:
        """Validate padding / truncation / max_length; returns "longest", "max_length" or "none"."""
        if padding is True or padding == "longest":
            pad_to = "longest"
        elif padding == "max_length":
            pad_to = "max_length"
        elif padding is False or padding == "do_not_pad":
            pad_to = "none"
        else:
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if truncation not in (True, False, "longest_first"):
            raise ValueError(f"truncation must be True, False or 'longest_first', got {truncation!r}")
        if max_length is None:
            if truncation or pad_to == "max_length":
                raise ValueError("max_length=None with truncation or padding='max_length'; give an int")
            return pad_to
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
        need = self.num_special_tokens(pair)
        if max_length < need:
            # `tokenizers` would silently skip truncation here, so refuse instead.
            kind = "a pair ([CLS] A [SEP] B [SEP])" if pair else "a single text ([CLS] A [SEP])"
            raise ValueError(f"max_length={max_length} is too small: {kind} needs at least {need} tokens")
        return pad_to
