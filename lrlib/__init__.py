"""lrlib: the helper package of the course *Learning Rates, Hands-On*.

Each module backs one chapter and says which in its docstring:

- :mod:`lrlib.device`: pick a device, seed everything (every chapter).
- :mod:`lrlib.update`: the bare update rule and how big a step is (chapter 1).
- :mod:`lrlib.models`, :mod:`lrlib.data`: tiny models (an MLP, transformers, a tiny GPT) and offline
  data (the digits, MNIST-1D, two texts) (chapter 1 on).
- :mod:`lrlib.landscapes`: loss surfaces, regimes, sharpness; :mod:`lrlib.training`: a
  recording training loop (chapter 2).
- :mod:`lrlib.optim`: SGD, Adagrad, RMSprop, Adam, AdamW written out (chapter 3).
- :mod:`lrlib.schedules`: learning-rate schedules as pure functions of the step (chapter 4).
- :mod:`lrlib.finder`: the learning-rate range test that leaves no trace (chapter 6).
- :mod:`lrlib.trials`, :mod:`lrlib.batched`, :mod:`lrlib.jobs`: the one runner: training runs
  described by plain data (:class:`~lrlib.trials.Trial`), many trained as one batched model, one
  optimizer registry (chapter 4 on).
- :mod:`lrlib.experiments`: stored experiments, run by ``make experiments``, checked by every build.
- :mod:`lrlib.stats`: paired comparisons over shared seeds, grid optima (every comparison a chapter states).
- :mod:`lrlib.sweep`, :mod:`lrlib.param_groups`, :mod:`lrlib.batched`, :mod:`lrlib.transfer`:
  reading, judging and running learning-rate sweeps (chapter 7).
- :mod:`lrlib.plotting`: one figure style for the whole book.
- :mod:`lrlib.book`: glue for the chapters' prose, ``claim`` (evidence) and ``check`` (facts);
  :mod:`lrlib.exercise`: the exercises' checks.

Grading is not here: it is instructor infrastructure, in the package :mod:`lrgrade`.
"""

from lrlib.device import pick_device, seed_everything
from lrlib.update import sgd_step

__all__ = ["pick_device", "seed_everything", "sgd_step"]
__version__ = "0.1.0"
