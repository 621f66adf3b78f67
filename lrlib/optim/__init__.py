"""Readable optimizers, step for step as torch.optim's (chapter 3, *Optimizers*).

Each class subclasses ``torch.optim.Optimizer``, takes the constructor arguments
and defaults of the ``torch.optim`` class of the same name (less the
implementation switches ``foreach``, ``fused``, ``capturable``, ``differentiable``),
and gives the same parameters after any number of steps, to float32 rounding.
"""

from lrlib.optim.adagrad import Adagrad
from lrlib.optim.adam import Adam, AdamW
from lrlib.optim.rmsprop import RMSprop
from lrlib.optim.sgd import SGD

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]
