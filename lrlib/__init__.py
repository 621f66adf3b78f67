"""lrlib: the helper package of the course *Learning Rates, Hands-On*.

Each module backs one chapter and says which in its docstring:

- :mod:`lrlib.device`: pick a device, seed everything (every chapter).
- :mod:`lrlib.update`: the bare update rule and how big a step is (chapter 1).
- :mod:`lrlib.models`, :mod:`lrlib.data`: tiny models and offline data (chapter 1 on).
- :mod:`lrlib.landscapes`: loss surfaces, regimes, sharpness; :mod:`lrlib.training`: a
  recording training loop (chapter 2).
- :mod:`lrlib.optim`: SGD, Adagrad, RMSprop, Adam, AdamW written out (chapter 3).
- :mod:`lrlib.schedules`: learning-rate schedules as pure functions of the step (chapter 4).
- :mod:`lrlib.finder`: the learning-rate range test that leaves no trace (chapter 6).
- :mod:`lrlib.trials`, :mod:`lrlib.batched`, :mod:`lrlib.jobs`: training runs described by plain
  data, many trained as one batched model (chapter 5, with the transformer blocks of
  :mod:`lrlib.models`).
- :mod:`lrlib.sweep`, :mod:`lrlib.param_groups`, :mod:`lrlib.batched`, :mod:`lrlib.transfer`:
  reading, judging and running learning-rate sweeps (chapter 7).
- :mod:`lrlib.plotting`: one figure style for the whole book.
- :mod:`lrlib.book`: glue for the chapters' prose; :mod:`lrlib.exercise`: the exercises' checks.

Grading is not here: it is instructor infrastructure, in the package :mod:`lrgrade`.
"""

from lrlib.device import pick_device, seed_everything
from lrlib.update import sgd_step

__all__ = ["pick_device", "seed_everything", "sgd_step"]
__version__ = "0.1.0"
