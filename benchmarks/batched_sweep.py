"""K learning rates at once: lrlib.batched.train_batched against K separate runs of the same MLP.

Run with ``.venv/bin/python benchmarks/batched_sweep.py [--device cpu|cuda] [--ks 1 4 16 64] [--repeats N]``.
Each run trains the digits MLP (64-128-10, Adam, batches of 64) for 100 steps; the
sequential side is K ordinary runs one after another (``torch.optim.Adam``,
``lrlib.training.train``), the batched side one :func:`lrlib.batched.train_batched`
call with the same K (rate, seed) pairs. Prints the median seconds of ``--repeats``
rounds (after a warm-up) and the speed-up for each K.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from lrlib.batched import train_batched
from lrlib.data import load_digits, minibatches
from lrlib.device import pick_device
from lrlib.models import MLP
from lrlib.training import train

STEPS, BATCH = 100, 64


def sequential(data, lrs, seeds):
    for lr, seed in zip(lrs, seeds):
        torch.manual_seed(seed)
        model = MLP(64, (128,), 10).to(data.x_train.device)
        train(model, torch.optim.Adam(model.parameters(), lr=lr),
              minibatches(data.x_train, data.y_train, BATCH, steps=STEPS, seed=seed), F.cross_entropy)


def batched(data, lrs, seeds):
    train_batched(data, lrs, seeds, steps=STEPS, batch_size=BATCH)


def timed(fn, *args, cuda=False):
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = pick_device(args.device)
    data = load_digits(device=device)
    cuda = device.type == "cuda"
    print(f"{STEPS} steps per run on {device} (torch {torch.__version__}), median of {args.repeats}:\n")
    print("| K | K separate runs (s) | one batched run (s) | speed-up |")
    print("|---|---|---|---|")
    for k in args.ks:
        lrs = list(np.logspace(-4, -1, k)) if k > 1 else [1e-3]
        seeds = [i % 3 for i in range(k)]
        times = {"sequential": [], "batched": []}
        for repeat in range(args.repeats + 1):
            for name, fn in (("sequential", sequential), ("batched", batched)):
                seconds = timed(fn, data, lrs, seeds, cuda=cuda)
                if repeat:
                    times[name].append(seconds)
        seq, bat = statistics.median(times["sequential"]), statistics.median(times["batched"])
        print(f"| {k} | {seq:.3f} | {bat:.3f} | {seq / bat:.1f}x |")


if __name__ == "__main__":
    main()
