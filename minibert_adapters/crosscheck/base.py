"""A case may name its base model instead of carrying it, so that a case of MiniLM with trained adapters is a few MB
instead of 188 MB (float64).

The writer leaves out the base tensors that did not train (frozen, not an adapter's) and writes in the metadata

    base = {"sha256": base_digest(those tensors), "tensors": [their names]}

The judge finds a model folder whose tensors of those names have that digest, the embedded all-MiniLM-L6-v2 or a
folder given with `--base`, and fills them in, in the case's dtype; a digest it cannot match is refused.

Convention: the digest is over the values rounded to float32 (name, shape and float32 bytes, in name order), so a
float64 case of a float32 checkpoint names that checkpoint; a base that differs below float32 precision is then
judged with the checkpoint's values, and any real difference shows as `base-mismatch`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

KEY = "base"  # the metadata field


def base_digest(tensors: dict) -> str:
    """SHA-256 over each tensor's name, shape and float32 (little-endian) bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(np.asarray(tensors[name]), dtype="<f4")
        h.update(f"{name}|{tuple(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def frozen_base_names(params: dict, trainable, is_adapter) -> list:
    """The names a case may leave out and name by digest: base tensors (not `is_adapter`) that do not train."""
    trains = set(trainable)
    return sorted(k for k in params if not is_adapter(k) and k not in trains)


def base_metadata(params: dict, names: list) -> str:
    return json.dumps({"sha256": base_digest({k: params[k] for k in names}), "tensors": names})


def default_folders() -> list:
    """Where a base is looked for without --base: the embedded all-MiniLM-L6-v2, if installed."""
    from minibert.pretrained import ModelNotFoundError, default_model_dir

    try:
        return [default_model_dir()]
    except ModelNotFoundError:
        return []


def folder_tensors(folder: Path) -> dict:
    """{BertModel parameter name: float32 array} of a model folder (config.json and model.safetensors)."""
    from minibert import BertConfig, BertModel
    from minibert.weights import match_checkpoint, read_safetensors

    config = BertConfig.from_json_file(folder / "config.json")
    model = BertModel(config, dtype=np.float32, seed=0)
    return match_checkpoint(model, read_safetensors(folder / "model.safetensors"))


def resolve_base(field, dtype: str, folders, where: str) -> dict:
    """{name: array in `dtype`} of the base the metadata field names, from the first folder that matches its
    digest; ValueError naming the case and the folders tried when none does."""
    if not isinstance(field, dict) or not isinstance(field.get("sha256"), str) or \
            not isinstance(field.get("tensors"), list) or not all(isinstance(n, str) for n in field["tensors"]):
        raise ValueError(f"{where}: metadata 'base' must be {{\"sha256\": hex digest, \"tensors\": [names]}}")
    folders = [Path(f) for f in (folders or [])] + default_folders()  # those given first, then the embedded
    tried = []
    for folder in folders:
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            tried.append(f"{folder} (no config.json and model.safetensors)")
            continue
        tensors = folder_tensors(folder)
        missing = [n for n in field["tensors"] if n not in tensors]
        if not missing and base_digest({n: tensors[n] for n in field["tensors"]}) == field["sha256"]:
            return {n: tensors[n].astype(dtype) for n in field["tensors"]}
        tried.append(str(folder))
    raise ValueError(f"{where}: its base model (sha256 {field['sha256'][:12]}..., {len(field['tensors'])} tensors) "
                     f"matches no folder tried ({'; '.join(tried) or 'none: the embedded MiniLM is not installed'}); "
                     "give the base model's folder with --base")
