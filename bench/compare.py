"""Benchmark: this project against what users run, on MiniLM at batch 32 x 128 tokens, float32; every ratio.

    python bench/compare.py [--threads 2] [--batch 32] [--tokens 128] [--repeats 3]
                            [--torch-python PY] [--adapterhub-python PY] [--only ours]

Measures, best of `repeats` wall-clock times after warm-up calls (one for a forward, STEP_WARMUP for a training
step, whose memory use grows over the first steps: the steady state is what a training run sees), with the same
thread count everywhere:

  forward          no gradient, eval mode: ours; transformers' BertModel with its default attention (sdpa) and
                   with eager attention
  full step        one fine-tuning step of BertForSequenceClassification (dropout on, loss, backward, clipping
                   at 1.0, AdamW over every parameter): ours; transformers (sdpa, eager)
  adapter step     the same step training Houlsby adapters m = 64, every LayerNorm and the classifier: ours;
                   AdapterHub 1.3.0 (DoubleSeqBnConfig, reduction factor 384 / 64, after train_adapter the
                   LayerNorms and the classifier set trainable so that both train the same 605,954 parameters)
  peak memory      of a process that loads the model and runs adapter steps: the OS's own high-water mark of
                   resident memory (getrusage ru_maxrss), and its rise over the resident size after loading
  float64 forward  ours, for the float64 / float32 ratio

Each system runs in its own process, one after the other: ours under this interpreter; transformers under
--torch-python (default: this interpreter when it has torch and transformers); AdapterHub under
--adapterhub-python (an environment with torch==2.13.0, transformers~=4.57.6 and adapters==1.3.0, whose package
`adapters` would shadow this project's). A system whose interpreter is missing is left out and said so.
The ratios printed are ours / theirs from this one run; nothing here is a timed test.

Ours runs as the `minibert` command runs it: with `autograd.kernels.keep_freed_memory()` (glibc keeps freed
blocks for reuse, as PyTorch's caching allocator does) and the kernel threads equal to --threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from _timing import best_of, pin_threads

HERE = os.path.dirname(os.path.abspath(__file__))
ADAPTER_SIZE = 64
LR = 1e-4
STEP_WARMUP = 3  # untimed training steps before the timed ones, for every system alike


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="Hugging Face folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--torch-python", help="interpreter with torch + transformers (default: this one, if it has them)")
    p.add_argument("--adapterhub-python", help="interpreter with AdapterHub 1.3.0 (adapters), torch, transformers")
    p.add_argument("--only", choices=["ours"], help="measure only this project (no comparison)")
    p.add_argument("--json", action="store_true", help="print the measurements as one JSON object")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the measuring process
    p.add_argument("--cases", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- the workload: the same token ids and labels for every system ---------------------------------------------
def workload(args, vocab_size):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab_size, size=(args.batch, args.tokens))
    mask = np.ones((args.batch, args.tokens), dtype=np.int64)
    labels = rng.integers(0, 2, size=args.batch)
    return ids, mask, labels


def rss_mb() -> float:
    """Resident memory now, from /proc (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The OS's high-water mark of this process's resident memory, in MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- workers: each measures some cases of one system and prints one JSON line -----------------------------------
def worker_ours(args, cases):
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    from autograd import kernels

    out = {"versions": {"numpy": np.__version__}, "keep-freed-memory": kernels.keep_freed_memory(),
           "kernel-threads": kernels.get_threads()}
    for case in cases:
        if case.startswith("forward"):
            out[case] = _ours_forward_time(args, np.float64 if case == "forward-f64" else np.float32)
        else:  # full-step / adapter-step
            out[case], out[case + "-trainable"], out["rss-after-load-mb"] = _ours_step_time(
                args, "full" if case == "full-step" else "adapter")
        out["peak-rss-mb"] = peak_rss_mb()
    return out


def _ours_forward_time(args, dtype) -> float:
    from autograd import no_grad
    from minibert import BertModel

    model = BertModel.from_pretrained(args.model, dtype=dtype).eval()
    ids, mask, _ = workload(args, model.config.vocab_size)

    def forward():
        with no_grad():
            model(ids, mask)

    return best_of(forward, args.repeats)


def _ours_step_time(args, mode):
    """(seconds per step, trained parameters, resident MB after loading) for a fine-tuning step as
    `minibert_adapters.training.loop.fine_tune` takes it."""
    from adapters.policy import weight_decay_groups
    from autograd import optim
    from minibert import BertForSequenceClassification
    from minibert_adapters.training.loop import set_trainable

    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    ids, mask, labels = workload(args, model.config.vocab_size)
    set_trainable(model, mode, size=ADAPTER_SIZE)
    groups = weight_decay_groups(model, 0.01)
    opt = optim.AdamW(groups, lr=LR, eps=1e-6, weight_decay=0.01)
    params = [p for g in groups for p in g["params"]]
    loaded = rss_mb()

    def step():
        model.train()
        loss = model(ids, mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(params, 1.0)
        opt.step()

    return best_of(step, args.repeats, STEP_WARMUP), sum(p.size for p in params), loaded


def worker_torch(args, cases):
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    for case in cases:
        attn = "eager" if case.endswith("eager") else "sdpa"
        if case.startswith("forward"):
            out[case] = _torch_forward_time(args, transformers.BertModel.from_pretrained(
                args.model, attn_implementation=attn).eval())
        else:  # full-step-sdpa / full-step-eager
            model = transformers.BertForSequenceClassification.from_pretrained(
                args.model, num_labels=2, attn_implementation=attn)
            out[case] = _torch_step_time(args, model, list(model.parameters()))
        out["peak-rss-mb"] = peak_rss_mb()
    return out


def _torch_forward_time(args, model) -> float:
    import torch

    ids, mask, _ = (torch.tensor(a) for a in workload(args, model.config.vocab_size))

    def forward():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)

    return best_of(forward, args.repeats)


def worker_adapterhub(args, cases):
    import torch
    import transformers

    import adapters  # AdapterHub's package (this process never imports the project's `adapters`)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"versions": {"adapters": adapters.__version__ if hasattr(adapters, "__version__") else
                        _dist_version("adapters"), "torch": torch.__version__,
                        "transformers": transformers.__version__}}
    model = transformers.BertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    adapters.init(model)
    model.add_adapter("task", config=adapters.DoubleSeqBnConfig(
        reduction_factor=model.config.hidden_size / ADAPTER_SIZE))
    model.train_adapter("task")
    # As the paper's Houlsby setting and this project's preset: the LayerNorms and the classifier train too.
    for name, p in model.named_parameters():
        if "LayerNorm" in name or name.startswith("classifier."):
            p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    out["adapter-step-trainable"] = sum(p.numel() for p in params)
    out["rss-after-load-mb"] = rss_mb()
    out["adapter-step"] = _torch_step_time(args, model, params)
    out["peak-rss-mb"] = peak_rss_mb()
    return out


def _torch_step_time(args, model, params) -> float:
    import torch

    ids, mask, labels = (torch.tensor(a) for a in workload(args, model.config.vocab_size))
    opt = torch.optim.AdamW(params, lr=LR, eps=1e-6, weight_decay=0.01)

    def step():
        model.train()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return best_of(step, args.repeats, STEP_WARMUP)


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


WORKERS = {"ours": worker_ours, "torch": worker_torch, "adapterhub": worker_adapterhub}


# ---- the orchestrator ----------------------------------------------------------------------------------------------
def run_worker(python, name, cases, args) -> dict:
    argv = [python, os.path.abspath(__file__), "--worker", name, "--cases", ",".join(cases),
            "--batch", str(args.batch), "--tokens", str(args.tokens), "--threads", str(args.threads),
            "--repeats", str(args.repeats), "--model", str(args.model)]
    env = dict(os.environ)
    env.update({v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    env.pop("PYTHONPATH", None)  # each worker sees only its own environment's packages
    print(f"  measuring {name}: {', '.join(cases)} ...", file=sys.stderr, flush=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=HERE)
    if done.returncode != 0:
        raise SystemExit(f"bench/compare.py: the {name} worker ({python}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def has_modules(python, modules) -> bool:
    code = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in sys.argv[1:]))"
    return subprocess.run([python, "-c", code, *modules], cwd=HERE, capture_output=True).returncode == 0


def main(argv=None):
    args = parse(argv)
    pin_threads(args.threads)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args, args.cases.split(","))))
        return 0
    sys.path.insert(0, os.path.dirname(HERE))
    from minibert.pretrained import resolve_model_dir

    args.model = str(resolve_model_dir(args.model))
    torch_py = args.torch_python or (sys.executable if has_modules(sys.executable, ["torch", "transformers"])
                                     else None)
    hub_py = args.adapterhub_python
    if args.only == "ours":
        torch_py = hub_py = None
    for flag, py in (("--torch-python", args.torch_python), ("--adapterhub-python", hub_py)):
        if py and not os.path.isfile(py):
            raise SystemExit(f"bench/compare.py: {flag} {py}: no such interpreter")

    start = time.time()
    res = {"ours": run_worker(sys.executable, "ours", ["forward", "forward-f64", "full-step"], args)}
    adapter = run_worker(sys.executable, "ours", ["adapter-step"], args)  # its own process: its own peak memory
    res["ours"].update({"adapter-step": adapter["adapter-step"], "adapter-step-trainable": adapter[
        "adapter-step-trainable"], "adapter-peak-rss-mb": adapter["peak-rss-mb"],
        "adapter-rss-after-load-mb": adapter["rss-after-load-mb"]})
    if torch_py:
        res["torch"] = run_worker(torch_py, "torch", ["forward-sdpa", "forward-eager", "full-step-sdpa",
                                                      "full-step-eager"], args)
    if hub_py:
        res["adapterhub"] = run_worker(hub_py, "adapterhub", ["adapter-step"], args)
    res["settings"] = {"batch": args.batch, "tokens": args.tokens, "threads": args.threads, "repeats": args.repeats,
                       "model": args.model, "machine": machine(),
                       "seconds": round(time.time() - start)}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        report(res, torch_py, hub_py)
    return 0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line for line in lines if line.startswith("flags"))
        cpu += ", AVX-512" if "avx512f" in flags else ""
    except (OSError, StopIteration):
        pass
    return f"{cpu}; {len(os.sched_getaffinity(0))} cores available; Python {platform.python_version()}"


def report(res, torch_py, hub_py):
    o, t, h, s = res["ours"], res.get("torch"), res.get("adapterhub"), res["settings"]
    versions = {**o["versions"], **(t or {}).get("versions", {}), **(h or {}).get("versions", {})}
    print(f"MiniLM ({s['model']}) {s['batch']} x {s['tokens']} tokens, float32, {s['threads']} threads, "
          f"best of {s['repeats']}")
    print(f"machine: {s['machine']}")
    print(f"ours: kernel threads {o['kernel-threads']}, keep_freed_memory() {o['keep-freed-memory']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    def theirs(system, key):
        return system[key] if system else None

    rows = [  # (what, ours, theirs, against, target ratio)
        ("forward, no grad", o["forward"], theirs(t, "forward-sdpa"), "transformers sdpa", 1.25),
        ("", o["forward"], theirs(t, "forward-eager"), "transformers eager", None),
        ("full fine-tuning step", o["full-step"], theirs(t, "full-step-sdpa"), "transformers sdpa", 1.3),
        ("", o["full-step"], theirs(t, "full-step-eager"), "transformers eager", None),
        ("adapter step (m=64)", o["adapter-step"], theirs(h, "adapter-step"), "AdapterHub 1.3.0", 1.25)]
    print(f"\n{'what':<24}{'ours':>9}  {'theirs':>9}  {'against':<20}{'ratio':>7}  target")
    for what, ours, other, against, target in rows:
        ratio = ours / other if other else None
        print(f"{what:<24}{(f'{ours:8.3f}s' if what else ''):>9}  "
              f"{(f'{other:8.3f}s' if other else '(not run)'):>9}  {against:<20}"
              f"{(f'{ratio:6.2f}x' if ratio else '-'):>7}  "
              + (f"<= {target}x: {'met' if ratio <= target else 'MISSED'}" if target and ratio else ""))
    own = o["adapter-step"] / o["full-step"]
    print(f"\nadapter step / own full step: ours {own:.2f} (target <= 0.70: {'met' if own <= 0.70 else 'MISSED'})"
          + (f"; PyTorch {h['adapter-step'] / t['full-step-sdpa']:.2f} (AdapterHub / transformers sdpa)"
             if h and t else ""))
    f64 = o["forward-f64"] / o["forward"]
    print(f"float64 / float32 forward, ours: {f64:.2f} (target <= 2.2: {'met' if f64 <= 2.2 else 'MISSED'})")
    print("\npeak resident memory of a process loading the model and running adapter steps (ru_maxrss):")
    rise = o["adapter-peak-rss-mb"] - o["adapter-rss-after-load-mb"]
    print(f"  ours {o['adapter-peak-rss-mb']:.0f} MB (+{rise:.0f} MB over after loading), "
          f"{o['adapter-step-trainable']:,} trained parameters")
    if h:
        print(f"  AdapterHub {h['peak-rss-mb']:.0f} MB (+{h['peak-rss-mb'] - h['rss-after-load-mb']:.0f} MB over "
              f"after loading), {h['adapter-step-trainable']:,} trained parameters")
        ratio = o["adapter-peak-rss-mb"] / h["peak-rss-mb"]
        print(f"  ratio {ratio:.2f} (target <= 1: {'met' if ratio <= 1 else 'MISSED'})")
    for name, py, flag in (("transformers", torch_py, "--torch-python"), ("AdapterHub", hub_py, "--adapterhub-python")):
        if not py:
            print(f"({name} not measured: give {flag} PY, an interpreter that has it)")
    print(f"({s['seconds']} s)")


if __name__ == "__main__":
    sys.exit(main())
