"""Must FAIL to type-check: metrics asked of a loss without a metrics pass (it raises ValueError at run time)."""

import numpy as np

import fusedloss as fl

x = np.zeros((3, 4))
fl.categorical_focal(x, np.zeros(3, dtype=np.int64), metrics=("accuracy",))  # E: unexpected keyword argument "metrics"
