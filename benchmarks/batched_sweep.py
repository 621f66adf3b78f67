"""K trials at once: the one runner's batched copies against the same K trials run one by one.

Run with ``.venv/bin/python benchmarks/batched_sweep.py [--device cpu|cuda] [--ks 1 4 16] [--repeats N]
[--models mlp gpt]``. Both sides call :func:`lrlib.trials.run_trials` on the same K trials (K rates,
seeds 0, 1, 2, ...): ``batch=False`` trains them one after another, ``batch=True`` as one
:class:`lrlib.batched.BatchedModel`. Two models:

- ``mlp``: the digits MLP (64-128-10, Adam, batches of 64, 100 steps), a model whose step is
  mostly overhead;
- ``gpt``: the tiny language model of the stored warmup experiment (``TinyGPT``, d = 64, 2
  layers, 64 bytes of context, AdamW, batches of 32 windows, 30 steps), whose step is mostly
  arithmetic.

Prints the median seconds of ``--repeats`` rounds (after a warm-up), the speed-up, and the peak
resident memory of a fresh process that trains K = 16 copies of the language model batched.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from lrlib.device import pick_device
from lrlib.trials import Trial, run_trials

SETTINGS = {
    "mlp": dict(data="digits", model="mlp", hidden=(128,), optimizer="adam", steps=100, batch_size=64),
    "gpt": dict(data="shakespeare", model="gpt", d_model=64, n_layers=2, context=64, optimizer="adamw",
                weight_decay=0.1, steps=30, batch_size=32),
}


def trials(model: str, k: int, device: str) -> list[Trial]:
    lrs = np.logspace(-4, -2, k) if k > 1 else [1e-3]
    return [Trial(float(lr), seed=i, device=device, **SETTINGS[model]) for i, lr in enumerate(lrs)]


def timed(batch: bool, todo: list[Trial], cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    run_trials(todo, batch=batch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_memory_mib(device: str, k: int = 16) -> float:
    """Peak resident memory (MiB) of a fresh process that trains k copies of the language model."""
    code = ("import resource, sys; sys.path.insert(0, 'benchmarks'); import batched_sweep as b; "
            f"b.run_trials(b.trials('gpt', {k}, {device!r}), batch=True); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    device = str(pick_device(args.device))
    cuda = device.startswith("cuda")
    print(f"on {device} (torch {torch.__version__}, {torch.get_num_threads()} threads), "
          f"median of {args.repeats}:\n")
    print("| model | K | K runs one by one (s) | K batched copies (s) | speed-up |")
    print("|---|---|---|---|---|")
    for model in args.models:
        for k in args.ks:
            todo = trials(model, k, device)
            times: dict[bool, list[float]] = {False: [], True: []}
            for repeat in range(args.repeats + 1):
                for batch in (False, True):
                    seconds = timed(batch, todo, cuda)
                    if repeat:  # the first round warms caches and loads the data
                        times[batch].append(seconds)
            one, many = statistics.median(times[False]), statistics.median(times[True])
            print(f"| {model} | {k} | {one:.2f} | {many:.2f} | {one / many:.1f}x |")
    if "gpt" in args.models:
        print(f"\npeak resident memory, K = 16 language models batched on {device}: "
              f"{peak_memory_mib(device):.0f} MiB (this process: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
