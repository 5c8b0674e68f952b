"""Must FAIL to type-check: a loss parameter given positionally (parameters are keyword-only)."""

import numpy as np

import fusedloss as fl

p = np.zeros(3)
fl.huber(p, p, 0.5)  # E: no overload variant of "__call__" of "_Loss_huber" matches argument types
