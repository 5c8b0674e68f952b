"""Must FAIL to type-check: a misspelt loss parameter (tests/test_typing.py expects mypy to reject it)."""

import numpy as np

import fusedloss as fl

p = np.zeros(3)
fl.huber(p, p, delt=0.5)  # E: unexpected keyword argument "delt"
