"""Time one optimizer step on a ~1M-parameter model: lrlib.optim against torch.optim.

Run with ``.venv/bin/python benchmarks/optim_step.py [--device cpu|cuda] [--repeats N]``.
Gradients are fixed random tensors, so only ``optimizer.step()`` is timed; each
figure is the median over ``--repeats`` steps after a warm-up, the three
implementations timed in rotation so that background load hits them alike. Prints a Markdown
table with the ratio of lrlib's time to torch's single-tensor (foreach=False) and
multi-tensor (foreach=True) implementations.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from functools import partial

import torch

import lrlib.optim as ours
from lrlib.device import pick_device
from lrlib.models import MLP, count_parameters

SETTINGS = {
    "SGD": dict(lr=0.1, momentum=0.9, weight_decay=1e-4),
    "Adagrad": dict(lr=0.01),
    "RMSprop": dict(lr=1e-3, momentum=0.9),
    "Adam": dict(lr=1e-3),
    "AdamW": dict(lr=1e-3, weight_decay=0.1),
}


def time_interleaved(makers: dict, model: torch.nn.Module, repeats: int,
                     device: torch.device) -> dict[str, float]:
    """Median seconds per ``step()`` for each optimizer, measured in rotation so that
    background noise hits all of them alike. Each gets its own copy of the model."""
    gen = torch.Generator().manual_seed(0)
    grads = [(1e-3 * torch.randn(p.shape, generator=gen)).to(device) for p in model.parameters()]
    optimizers = {}
    for name, make in makers.items():
        twin = copy.deepcopy(model)
        for p, g in zip(twin.parameters(), grads):
            p.grad = g.clone()
        optimizers[name] = make(twin.parameters())
    times: dict[str, list[float]] = {name: [] for name in makers}
    for i in range(repeats + 10):
        for name, optimizer in optimizers.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 10:  # the first steps allocate state
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = MLP(1024, (640, 512), 10).to(device)
    print(f"{count_parameters(model):,} parameters on {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} steps\n")
    print("| optimizer | lrlib (ms) | torch foreach=False (ms) | torch foreach=True (ms) "
          "| lrlib / foreach=False | lrlib / foreach=True |")
    print("|---|---|---|---|---|---|")
    for name, settings in SETTINGS.items():
        mine, theirs = getattr(ours, name), getattr(torch.optim, name)
        t = time_interleaved({"lrlib": partial(mine, **settings),
                              "loop": partial(theirs, foreach=False, **settings),
                              "foreach": partial(theirs, foreach=True, **settings)},
                             model, args.repeats, device)
        print(f"| {name} | {1e3 * t['lrlib']:.3f} | {1e3 * t['loop']:.3f} | {1e3 * t['foreach']:.3f} "
              f"| {t['lrlib'] / t['loop']:.2f} | {t['lrlib'] / t['foreach']:.2f} |")


if __name__ == "__main__":
    main()
