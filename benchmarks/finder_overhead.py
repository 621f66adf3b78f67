"""What the range test costs beyond the training it does: lrlib.finder.find_lr against a bare loop.

Run with ``.venv/bin/python benchmarks/finder_overhead.py [--device cpu|cuda] [--repeats N]``.
Each contender runs the same 100 iterations (Adam on a 64-512-512-10 MLP, digits
in batches of 128 from a ``DataLoader``, rates growing from 1e-5 to 1e-2 so nothing
diverges), and each is timed ``--repeats`` times in rotation; the table gives the
median and the ratio to the bare loop. The bare loop sets the rate, steps, and
reads the loss each iteration, as any loop that records a curve must.
``torch-lr-finder`` is timed too when it can be imported
(``pip install --no-deps --target DIR torch-lr-finder`` and ``PYTHONPATH=DIR``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lrlib.data import load_digits
from lrlib.device import pick_device
from lrlib.finder import find_lr, sweep_lrs
from lrlib.models import MLP

START, END, ITERS = 1e-5, 1e-2, 100


def bare_loop(model, optimizer, loader, device):
    losses, stream = [], iter(loader)
    for lr in sweep_lrs(START, END, ITERS):
        try:
            x, y = next(stream)
        except StopIteration:
            stream = iter(loader)
            x, y = next(stream)
        optimizer.param_groups[0]["lr"] = float(lr)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def lrlib_finder(model, optimizer, loader, device):
    return find_lr(model, optimizer, _Reiterable(loader, device), F.cross_entropy, start_lr=START,
                   end_lr=END, num_iters=ITERS, diverge_threshold=float("inf"), progress=False)


class _Reiterable:
    """The loader's batches moved to ``device``, restartable like the loader itself."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        return ((x.to(self.device), y.to(self.device)) for x, y in self.loader)


def third_party_finder(model, optimizer, loader, device):
    from torch_lr_finder import LRFinder

    finder = LRFinder(model, optimizer, torch.nn.CrossEntropyLoss(), device=device)
    optimizer.param_groups[0]["lr"] = START
    finder.range_test(loader, end_lr=END, num_iter=ITERS, step_mode="exp", diverge_th=float("inf"))
    finder.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = pick_device(args.device)
    data = load_digits()
    dataset = TensorDataset(data.x_train, data.y_train)
    loader = DataLoader(dataset, batch_size=128, shuffle=False, drop_last=True)
    torch.manual_seed(0)
    model = MLP(64, (512, 512), 10).to(device)
    contenders = {"bare loop": bare_loop, "lrlib find_lr": lrlib_finder}
    try:
        import torch_lr_finder  # noqa: F401

        contenders["torch-lr-finder"] = third_party_finder
    except ImportError:
        print("torch-lr-finder is not importable: timing lrlib against the bare loop only")
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, run in contenders.items():
            twin = copy.deepcopy(model)
            optimizer = torch.optim.Adam(twin.parameters(), lr=START)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(twin, optimizer, loader, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["bare loop"])
    print(f"{ITERS} iterations on {device} (torch {torch.__version__}), median of {args.repeats}:\n")
    print("| contender | median (ms) | ratio to bare loop |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {1e3 * median:.1f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
