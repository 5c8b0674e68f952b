"""Must FAIL to type-check: reduction="none" returns an array, not a float."""

import numpy as np

import fusedloss as fl

p = np.zeros(3)
v: float = fl.mse(p, p, reduction="none")  # E: incompatible types in assignment
