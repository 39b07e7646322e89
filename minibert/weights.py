"""Reading, checking, writing and converting Hugging Face BERT weights, without torch and without pickle.

The one place that maps checkpoint names onto model names: an optional `bert.` prefix is added or
removed, old TF-era LayerNorm names `gamma` / `beta` become `weight` / `bias`, the `position_ids` buffer
and pre-training heads (`cls.*`) are ignored, and then every tensor is checked (`autograd.nn.check_state`):
one error lists all missing, unexpected, mis-shaped and non-finite tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from autograd.nn import StateDictError, check_state
from minibert.config import BertConfig
from minibert.pretrained import model_source, resolve_model_dir

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(StateDictError):
    """A weights file that cannot be read, or whose tensors do not fit the model (the message lists every
    problem)."""


DIGEST_KEY = "minibert_sha256"  # in a safetensors file's metadata: the digest of its tensors, as written


def tensors_digest(tensors: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: a flipped bit anywhere in
    the data changes it, so a damaged file is refused instead of loading different numbers."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> Path:
    """Write tensors atomically, with their digest in the metadata (read_safetensors checks it)."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    metadata = {**(metadata or {}), DIGEST_KEY: tensors_digest(tensors)}
    return write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_safetensors(path) -> dict:
    """All tensors of a .safetensors file as NumPy arrays; a CheckpointError naming the file if it is
    damaged: unreadable, or (for files this project wrote) tensors that no longer match their digest."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open has no iterator)
    except (SafetensorError, ValueError, OSError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path} is damaged: its tensors no longer match the digest written with them")
    return tensors


def _rename(key: str) -> str:
    # TF-converted checkpoints name LayerNorm parameters gamma / beta.
    if ".LayerNorm." in key or key.startswith("LayerNorm."):
        key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
    return key


def _ignorable(key: str) -> bool:
    """Tensors a checkpoint may carry that are not parameters of these models."""
    return key.endswith("position_ids") or key.startswith(("cls.", "bert.cls.")) or ".cls." in key


def match_checkpoint(model, tensors: dict, optional_prefixes=()) -> dict:
    """Map checkpoint names to the model's parameter names, then check every tensor (`check_state`).

    Only the architecture's own parameters (`model.checkpoint_names`) are expected; optional_prefixes name
    those that may be absent from the checkpoint (a new classification head).
    Returns {model name: array}; raises CheckpointError listing every problem at once.
    """
    own = {k: p.shape for k, p in model.named_parameters() if k in model.checkpoint_names}
    mapped, unexpected = {}, {}
    for key, value in tensors.items():
        name = _rename(key)
        candidates = (name, "bert." + name, name.removeprefix("bert."))
        target = next((c for c in candidates if c in own), None)
        if target is not None:
            mapped[target] = value
        elif not (_ignorable(name) or (name.startswith("classifier.") and "classifier.weight" not in own)):
            unexpected[key] = value
    required = [k for k in own if not k.startswith(tuple(optional_prefixes))]
    try:
        check_state(own, {**mapped, **unexpected}, what=f"checkpoint for {type(model).__name__}", required=required)
    except StateDictError as e:
        raise CheckpointError(str(e)) from None
    return mapped


def load_pretrained(cls, path=None, dtype=np.float32, **kwargs):
    """Build `cls` from a Hugging Face folder and copy its weights in (see BertModel.from_pretrained)."""
    folder = resolve_model_dir(path)
    config = BertConfig.from_json_file(folder / CONFIG_NAME)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        hint = (f"; {folder} has pytorch_model.bin: convert it with `minibert convert {folder} {folder}`"
                if (folder / "pytorch_model.bin").is_file() else "")
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {folder}{hint}")
    num_labels, seed = kwargs.get("num_labels"), kwargs.get("seed", 0)
    if num_labels is not None:
        config.num_labels = num_labels
        config.validate()
    config.extra["_name_or_path"] = model_source(folder)  # where it came from, as transformers records it
    model = cls(config, dtype=dtype, seed=seed)
    mapped = match_checkpoint(model, read_safetensors(weights), optional_prefixes=("classifier.",))
    model.load_state_dict(mapped, strict=False)
    model.eval()
    return model


def write_atomically(path, write) -> Path:
    """Call write(tmp_path), then rename tmp_path to `path`: a crash mid-write never leaves a half-written
    file under the real name (the rename is atomic on POSIX and Windows). The file gets the permissions
    the user's umask gives any new file (safetensors itself writes 0600)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    tmp.replace(path)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it, then put it back
    os.umask(mask)
    return mask


def save_pretrained(model, directory) -> Path:
    """Write config.json + model.safetensors that transformers loads: the architecture's own parameters
    (`model.checkpoint_names`); modules attached through a hook are saved by whoever attached them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config["architectures"] = [type(model).__name__]
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_atomically(directory / CONFIG_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    tensors = {k: v for k, v in model.state_dict().items() if k in model.checkpoint_names}
    write_safetensors(directory / WEIGHTS_NAME, tensors, {"format": "pt"})  # transformers expects format "pt"
    return directory


def convert_pytorch_checkpoint(src, dst) -> tuple[Path, list]:
    """Turn pytorch_model.bin into model.safetensors. Needs torch, and only here; never unpickles
    arbitrary objects (torch.load with weights_only=True). src/dst may be folders or files.

    A state dict nested one level ({"state_dict": {...}} or {"model": {...}}, as training scripts save it)
    is unwrapped. Convention: bfloat16 tensors (NumPy has no bfloat16) are widened to float32, exactly.
    Returns (the file written, notes on what was changed).
    """
    src, dst = Path(src), Path(dst)
    src_file = src / "pytorch_model.bin" if src.is_dir() else src
    # The input first: a wrong path is the likelier mistake, and installing torch would not mend it.
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if not src_file.is_file():
        raise FileNotFoundError(f"no pytorch_model.bin at {src_file}")
    if src_file.stat().st_size == 0:
        raise ValueError(f"{src_file} is empty (0 bytes): not a checkpoint")
    try:
        import torch
    except ImportError:
        raise ImportError("converting pytorch_model.bin needs torch (only for this step): "
                          "pip install torch==2.13.0") from None
    try:
        state = torch.load(src_file, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for anything but tensors and plain containers
        raise ValueError(f"{src_file} is not a plain tensor checkpoint; refusing to unpickle it "
                         f"(weights_only=True): {type(e).__name__}: {e}") from None
    notes = []
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and len(state) <= 3:
            state, notes = state[key], notes + [f"unwrapped the state dict stored under {key!r}"]
            break
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{src_file} holds {type(state).__name__}, not a state dict of tensors")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{src_file}: entries that are not tensors: {', '.join(map(str, not_tensors[:5]))}")
    widened = [k for k, v in state.items() if v.dtype == torch.bfloat16]
    if widened:
        notes.append(f"widened {len(widened)} bfloat16 tensors to float32 (exact; NumPy has no bfloat16)")
    tensors = {k: np.ascontiguousarray((v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy())
               for k, v in state.items()}
    if dst.suffix != ".safetensors":
        dst.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and (src / CONFIG_NAME).is_file() and src.resolve() != dst.resolve():
            shutil.copy(src / CONFIG_NAME, dst / CONFIG_NAME)
        dst = dst / WEIGHTS_NAME
    write_safetensors(dst, tensors, {"format": "pt"})
    return dst, notes
