"""`minibert evaluate`, `minibert predict` and `minibert ablate`: use a trained run on new data.

--model takes a `minibert train` run folder (its best/ checkpoint), an adapter folder (adapter_config.json +
adapter.safetensors, loaded onto the base model it names) or a full model folder (config.json +
model.safetensors with a classification head). A run's best/ or last/ given directly still reads the run's
task and max length from its history.json. AdapterHub and PEFT folders hold no trained classification head,
so they are refused here (adapters.load_adapter reads them in Python).

Files of more than PROGRESS_CHUNK examples show their progress on stderr; stdout holds only the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minibert_adapters.commands.arguments import EXIT_CODES, positive_int, writable_folder
from minibert_adapters.training.checkpoints import HISTORY, existing_dir, read_json
from minibert_adapters.training.data import FORMATS, TASKS, Example, read_table
from minibert_adapters.training.loop import predict_logits
from minibert_adapters.training.metrics import classification_metrics


@dataclass
class Loaded:
    model: object
    tok: object
    adapter: str | None   # the adapter's name (None for a full model)
    folder: Path          # the folder the weights came from
    task: str | None      # the run's task, when --model is a run folder
    max_length: int | None


def load_trained(path, base_model=None, checkpoint="best") -> Loaded:
    """The model in a run folder (its best/ or last/), an adapter folder or a full model folder."""
    from adapters import load_adapter
    from adapters.io import CONFIG_NAME, WEIGHTS_NAME, folder_kind, read_adapter_meta
    from minibert import BertForSequenceClassification, Tokenizer
    from minibert.pretrained import DEFAULT_MODEL, read_json_object
    from minibert.weights import read_safetensors

    folder, task, max_length = Path(path), None, None
    if not folder.is_dir():
        raise FileNotFoundError(f"--model {path}: no such folder")
    run = _run_of_checkpoint(folder)
    if run is not None:  # a run's best/ or last/ itself: the run's task and max length still hold
        settings = read_json(run / HISTORY, "run history").get("settings") or {}
        task, max_length = settings.get("task"), settings.get("max_length")
        base_model = base_model or settings.get("model") or DEFAULT_MODEL
    elif (folder / HISTORY).is_file():  # a run folder
        settings = read_json(folder / HISTORY, "run history").get("settings") or {}
        task, max_length = settings.get("task"), settings.get("max_length")
        # The run's own record of its base model (None: the embedded default) holds for runs saved before
        # adapter files named it.
        base_model = base_model or settings.get("model") or DEFAULT_MODEL
        inner = existing_dir(folder / checkpoint)
        if inner is None:
            raise FileNotFoundError(f"--model {path}: the run has no {checkpoint}/ checkpoint yet")
        folder = inner
    if (folder / CONFIG_NAME).is_file():
        origin = folder_kind(read_json_object(folder / CONFIG_NAME, "adapter config"))
        if origin in ("AdapterHub", "PEFT"):
            raise ValueError(f"--model {path}: an {origin} adapter folder, which holds the adapter without a trained "
                             "classification head, so there is nothing to classify with; give a `minibert train` "
                             "run folder, an adapter folder adapters.save_adapter wrote (with its head), or a full "
                             f"model folder (in Python, adapters.load_adapter(model, folder) reads {origin} folders: "
                             "train a head on it, then save_adapter)")
        meta = read_adapter_meta(folder)
        recorded = meta["base_model"].get("name_or_path")
        base = base_model or recorded
        if base is None:
            raise ValueError(f"{folder / CONFIG_NAME} does not name its base model (saved before adapters recorded "
                             "it); give --base-model (e.g. all-MiniLM-L6-v2)")
        num_labels = meta["base_model"].get("num_labels")
        if num_labels is None:  # older files: the head's weight says it
            head = read_safetensors(folder / WEIGHTS_NAME).get("classifier.weight")
            num_labels = head.shape[0] if head is not None else 2
        model = BertForSequenceClassification.from_pretrained(base, num_labels=num_labels)
        name = load_adapter(model, folder)
        return Loaded(model, Tokenizer.from_pretrained(base), name, folder, task, max_length)
    config_file, weights = folder / "config.json", folder / "model.safetensors"
    if not (config_file.is_file() and weights.is_file()):
        raise FileNotFoundError(f"--model {path}: neither a run folder (history.json), an adapter folder "
                                f"({CONFIG_NAME}) nor a model folder (config.json + model.safetensors)")
    head = [k for k in ("classifier.weight", "classifier.bias") if k in read_safetensors(weights)]
    if not head:
        raise ValueError(f"--model {path}: {weights} holds no classification head (classifier.*): a pretrained "
                         "encoder, not a fine-tuned classifier")
    if len(head) < 2:  # half a head would be completed with random numbers
        missing = ({"classifier.weight", "classifier.bias"} - set(head)).pop()
        raise ValueError(f"--model {path}: {weights} has no {missing} beside {head[0]}: a damaged classifier")
    origin = read_json(config_file, "model config").get("_name_or_path")  # before loading records this folder
    tok_source = folder if any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt")) else \
        base_model or origin
    if tok_source is None:
        raise ValueError(f"--model {path}: no tokenizer in the folder and no recorded origin; give --base-model")
    model = BertForSequenceClassification.from_pretrained(folder)
    return Loaded(model, Tokenizer.from_pretrained(tok_source), None, folder, task, max_length)


def _run_of_checkpoint(folder: Path) -> Path | None:
    """The run folder whose best/ or last/ (or the .old copy a crash left) `folder` is; None for any other."""
    if folder.name in ("best", "last", "best.old", "last.old") and (folder.parent / HISTORY).is_file():
        return folder.parent
    return None


def _read_inputs(args, loaded, need_labels) -> list:
    task = args.task or loaded.task
    num_labels = loaded.model.config.num_labels
    if task is not None and TASKS[task].num_labels != num_labels:
        raise ValueError(f"--task {task} has {TASKS[task].num_labels} classes, but the model in {loaded.folder} has "
                         f"{num_labels}")
    # The model's own class count bounds the labels when no task is known: a label it cannot predict would
    # only count as an error, silently.
    return read_table(args.data if need_labels else args.file, args.format, args.text_column,
                      args.text_pair_column, args.label_column, task=task, need_labels=need_labels,
                      num_labels=num_labels)


PROGRESS_CHUNK = 1024  # examples between progress lines; a multiple of predict_logits' batch of 64, so that the
                       # batches, and with them the logits, are the same as in one call


def _logits(loaded, examples, max_length, command) -> np.ndarray:
    """predict_logits over `examples`, with a progress line on stderr after each PROGRESS_CHUNK when there are
    more than that (a large file otherwise runs for minutes without a sign)."""
    if len(examples) <= PROGRESS_CHUNK:
        return predict_logits(loaded.model, loaded.tok, examples, max_length=max_length)
    chunks, start = [], time.perf_counter()
    for i in range(0, len(examples), PROGRESS_CHUNK):
        chunks.append(predict_logits(loaded.model, loaded.tok, examples[i:i + PROGRESS_CHUNK],
                                     max_length=max_length))
        done, elapsed = min(i + PROGRESS_CHUNK, len(examples)), time.perf_counter() - start
        print(f"{command}: {done}/{len(examples)} examples  {elapsed:.0f}s  eta "
              f"{elapsed / done * (len(examples) - done):.0f}s", file=sys.stderr, flush=True)
    return np.concatenate(chunks)


def _trained(args) -> Loaded:
    """The trained model of --model, with --task checked against the task it was trained on: a task of other
    classes would print the run's predictions under names that are not its own."""
    loaded = load_trained(args.model, args.base_model, args.checkpoint)
    task = getattr(args, "task", None)
    if task and loaded.task and TASKS[task].label_names != TASKS[loaded.task].label_names:
        raise ValueError(f"--task {task}: {args.model} was trained on {loaded.task}, whose classes are "
                         f"{', '.join(TASKS[loaded.task].label_names)}, not {', '.join(TASKS[task].label_names)}")
    return loaded


def _label_names(task, model) -> tuple:
    """The names of the classes: the task's; else those in the model's config.json (id2label), unless they are
    transformers' placeholders LABEL_0, LABEL_1, ...; else none (labels print as their index)."""
    if task:
        return TASKS[task].label_names
    id2label = model.config.extra.get("id2label")
    if isinstance(id2label, dict) and len(id2label) == model.config.num_labels:
        try:
            names = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
        except (TypeError, ValueError):
            return ()
        if names != tuple(f"LABEL_{i}" for i in range(len(names))):
            return names
    return ()


def _max_length(args, loaded) -> int:
    max_length = args.max_length or loaded.max_length or 128
    limit = loaded.model.config.max_position_embeddings
    if max_length > limit:
        raise ValueError(f"--max-length {max_length} exceeds the model's max_position_embeddings {limit}")
    return max_length


def _cmd_evaluate(args) -> int:
    loaded = _trained(args)
    examples = _read_inputs(args, loaded, need_labels=True)
    logits = _logits(loaded, examples, _max_length(args, loaded), "evaluate")
    result = classification_metrics(logits.argmax(-1), [e.label for e in examples], logits.shape[1])
    if args.json:
        print(json.dumps(result))
    else:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "n")
        print(f"{args.data}: {shown}  (n={result['n']}; {loaded.folder})")
    return 0


def _cmd_predict(args) -> int:
    loaded = _trained(args)
    if bool(args.text) == bool(args.file):
        raise ValueError("give either TEXT... or --file FILE")
    examples = [Example(t, None, -1) for t in args.text] if args.text else _read_inputs(args, loaded, False)
    logits = _logits(loaded, examples, _max_length(args, loaded), "predict")
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    probs = shifted / shifted.sum(-1, keepdims=True)
    names = _label_names(args.task or loaded.task, loaded.model)
    for e, p in zip(examples, probs):
        label = int(p.argmax())
        name = names[label] if label < len(names) else str(label)
        text = e.text_a if e.text_b is None else [e.text_a, e.text_b]
        # ensure_ascii=False: the text as given ("café", not "caf\u00e9"); JSON quoting keeps a tab or newline
        # inside it from breaking the line.
        if args.json:
            print(json.dumps({"label": label, "label_name": name, "probabilities": [float(x) for x in p],
                              "text": text}, ensure_ascii=False))
        else:
            print(f"{name}\t{p[label]:.4f}\t{json.dumps(text, ensure_ascii=False)}")
    return 0


def _cmd_ablate(args) -> int:
    from minibert_adapters.experiments.ablation import ablate_spans, write_ablation, write_ablation_json

    # Before any evaluation: a file in the way or a read-only folder found at the end would lose every score.
    out = writable_folder(args.out, "--out")
    loaded = _trained(args)
    if loaded.adapter is None:
        raise ValueError(f"--model {args.model}: a full model has no adapters to switch off")
    examples = _read_inputs(args, loaded, need_labels=True)
    metric = args.metric or (TASKS[args.task or loaded.task].metric if (args.task or loaded.task) else "accuracy")
    metric = "mcc" if metric == "matthews" else metric
    max_length = _max_length(args, loaded)

    def score():
        logits = predict_logits(loaded.model, loaded.tok, examples, max_length=max_length)
        return classification_metrics(logits.argmax(-1), [e.label for e in examples], logits.shape[1])[metric]

    about = {"metric": metric, "n": len(examples), "model": str(args.model), "data": str(args.data)}
    done = _previous_ablation(out, about, args.overwrite)
    # Each score is kept as it comes (ablation.json says "complete": false until the last): a crash, Ctrl-C or
    # full disk later loses only the spans not yet scored, and the next run starts from them.
    result = ablate_spans(loaded.model, loaded.adapter, score, log=lambda line: print(line, flush=True),
                          partial=lambda so_far: write_ablation_json({**so_far, **about}, out), done=done)
    result.update(about)
    written = write_ablation(result, out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _previous_ablation(out: Path, about: dict, overwrite: bool):
    """The unfinished ablation.json in `out` of the same model, data and metric (to resume), or None; a finished
    one, or one of something else, is refused unless `overwrite`."""
    from minibert_adapters.experiments.ablation import is_complete

    path = out / "ablation.json"
    if overwrite or not path.is_file():
        return None
    previous = read_json(path, "ablation result")
    same = all(previous.get(k) == v for k, v in about.items())
    if same and not is_complete(previous):
        print(f"resuming {path}: {len(previous.get('spans', []))} spans done", flush=True)
        return previous
    what = "a finished ablation" if same else "the ablation of another model, data or metric"
    raise ValueError(f"--out {out}: {path} holds {what}; give another --out, or --overwrite to replace it")


def _inputs(p, data_required: bool):
    if data_required:
        p.add_argument("--data", required=True, help="a TSV / CSV file with a header, or JSON lines")
    p.add_argument("--format", choices=FORMATS, help="the file's format (default: from its extension); glue: the "
                                                     "task's original GLUE file, e.g. CoLA's dev.tsv (no header)")
    p.add_argument("--text-column", help="default: GLUE's names (sentence1 + sentence2, question + sentence, "
                                         "sentence), the first pair the file has")
    p.add_argument("--text-pair-column", help="the second text of a pair task")
    p.add_argument("--label-column", default="label", help="default label; integers, or the task's label names")


def _model_options(p):
    p.add_argument("--model", required=True, help="a minibert train run folder, an adapter folder or a full "
                                                  "model folder")
    p.add_argument("--base-model", help="the model an adapter goes on (default: the one its adapter_config.json "
                                        "names; needed for adapters saved without it)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of a run folder (default best)")
    p.add_argument("--task", choices=list(TASKS), help="label names and metric (default: the run's task)")
    p.add_argument("--max-length", type=positive_int, help="tokens per example (default: the run's, else 128)")


def register(sub):
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("evaluate", help="accuracy, F1 and Matthews correlation of a trained model on a file",
                       description=__doc__.split("\n\n")[1], epilog=EXIT_CODES, formatter_class=fmt)
    _model_options(p)
    _inputs(p, True)
    p.add_argument("--json", action="store_true", help="print one JSON object: accuracy, f1, mcc, n")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="the predicted label of each text", epilog=EXIT_CODES,
                       description="Print label name, its probability and the text, one line per input "
                                   "(--json: one object per line).")
    _model_options(p)
    p.add_argument("text", nargs="*", help="texts to classify (single sentences)")
    p.add_argument("--file", help="classify the rows of this TSV / CSV / JSONL file (pairs too; labels ignored)")
    _inputs(p, False)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("ablate", help="switch a trained adapter off in every span of layers (Houlsby2019 Fig. 6)",
                       description="Evaluate the adapter with its modules removed from every contiguous span of "
                                   "layers [i, j], without retraining; write ablation.json and (with "
                                   "matplotlib) ablation.png, the heatmap of the drop.", epilog=EXIT_CODES)
    _model_options(p)
    _inputs(p, True)
    p.add_argument("--metric", choices=("accuracy", "f1", "mcc"), help="default: the task's (mcc for CoLA)")
    p.add_argument("--out", required=True, help="folder for ablation.json (rewritten after every span, "
                                                "'complete': false until the last) and ablation.png; an "
                                                "unfinished one of the same model, data and metric is resumed")
    p.add_argument("--overwrite", action="store_true", help="replace a finished ablation.json in --out, or one "
                                                            "of another model, data or metric")
    p.set_defaults(func=_cmd_ablate)

