"""scikit-learn's loss metrics with scikit-learn's signatures and values (the public names are
``fusedloss.metrics``'s, whose docstring gives the conventions): input checks as scikit-learn makes them, the
regression metrics (the 1-D cases of fusedloss's elementwise losses on the fused kernels) and the
classification ones."""

from __future__ import annotations

import math
import numbers
import sys
import warnings

import numpy as np

from ._losses import LOSSES


class UndefinedMetricWarning(UserWarning):
    """A score that is not defined for the data given (as scikit-learn's warning of the same name). Where
    scikit-learn is imported, the warning issued is also an instance of ``sklearn.exceptions.UndefinedMetricWarning``,
    so that filters and ``pytest.warns`` written for scikit-learn's metrics catch it too."""


_CATEGORIES: dict = {}  # scikit-learn's class -> the subclass of both that is issued


def _undefined_metric_category() -> type:
    """``UndefinedMetricWarning``, or a subclass of it and of scikit-learn's class of the same name when
    scikit-learn's exceptions module is loaded (importing scikit-learn only for this would cost every user
    its import time; code that filters scikit-learn's class has imported it)."""
    theirs = getattr(sys.modules.get("sklearn.exceptions"), "UndefinedMetricWarning", None)
    if theirs is None or not isinstance(theirs, type) or not issubclass(theirs, Warning):
        return UndefinedMetricWarning
    both = _CATEGORIES.get(theirs)
    if both is None:
        both = _CATEGORIES[theirs] = type("UndefinedMetricWarning", (UndefinedMetricWarning, theirs),
                                          {"__module__": __name__, "__doc__": UndefinedMetricWarning.__doc__})
    return both


class _ParameterError(ValueError, TypeError):
    """A parameter of a type or value the metric does not take: both a ValueError and a TypeError, as
    scikit-learn's ``InvalidParameterError``, so that code catching either catches it here too."""


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# --- input checking ----------------------------------------------------------------------------------------


def _float_dtype(*arrays):
    """The computation dtype, chosen as scikit-learn does: the widest floating dtype among the inputs that have
    one, else float64."""
    kinds = [np.asarray(a).dtype for a in arrays if a is not None and hasattr(a, "dtype")]
    floats = [d for d in kinds if d in _FLOATS]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


def _numeric(x, name: str, dtype) -> np.ndarray:
    """x as a numeric array of ``dtype`` (1-D or 2-D, at least one sample); errors name the argument."""
    if hasattr(x, "__cuda_array_interface__"):
        raise TypeError(f"{name} is a device array ({type(x).__module__}.{type(x).__name__}); fusedloss.metrics "
                        "takes host arrays: copy it to the host first (e.g. cupy.asnumpy(x), tensor.cpu())")
    arr = np.asarray(x)
    if arr.dtype.kind == "c":  # a cast would drop the imaginary part
        raise ValueError(f"{name}: Complex data not supported (as in scikit-learn), got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype} ({e})") from None
    else:
        arr = np.asarray(arr, dtype=dtype)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a 1-D or 2-D array, got a scalar ({arr.item()!r})")
    if arr.ndim > 2:
        raise ValueError(f"{name} must be a 1-D or 2-D array, got {arr.ndim} dimensions (shape {arr.shape})")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}): at least 1 sample is needed")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not math.isfinite(float(np.add.reduce(arr, axis=None))):
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN")
        if np.isinf(arr).any():
            raise ValueError(f"{name} contains infinity")


def _lengths(**arrays):
    sizes = {k: (np.shape(v)[0] if np.ndim(v) else 1) for k, v in arrays.items() if v is not None}
    if len(set(sizes.values())) > 1:
        raise ValueError("inconsistent numbers of samples: " + ", ".join(f"{k} has {n}" for k, n in sizes.items()))


def _sample_weight(sample_weight, n: int, dtype, *, nonzero=True):
    """A 1-D weight array of length n (None stays None)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D with one weight per sample ({n}), got shape {w.shape}")
    if w.shape[0] != n:
        raise ValueError(f"inconsistent numbers of samples: y_true has {n}, sample_weight has {w.shape[0]}")
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}")
    w = np.asarray(w, dtype=dtype)
    _check_finite(w, "sample_weight")
    if nonzero and not w.any():
        raise ValueError("sample_weight must contain at least one non-zero number")
    return w


def _average(values: np.ndarray, w) -> float:
    """sum(w * v) / sum(w) along axis 0 (per output for 2-D values), accumulated in float64."""
    if w is None:
        return np.mean(values, axis=0, dtype=np.float64)
    # multiply and sum (pairwise), not np.dot: a threaded BLAS dot stalls when other processes hold the cores
    w64 = w.astype(np.float64, copy=False)
    total = np.sum(w64)
    if total == 0:  # weights of both signs (all zero is refused earlier): NumPy's average raises, as here
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    weighted = values * (w64 if values.ndim == 1 else w64[:, None])
    return np.sum(weighted, axis=0, dtype=np.float64) / total


def _regression(y_true, y_pred, sample_weight, multioutput):
    """(y_true, y_pred, weight, multioutput) as scikit-learn's regression metrics check them: 2-D (n, outputs),
    a floating dtype, finite, consistent; multioutput 'raw_values', 'uniform_average' or one weight per output."""
    dtype = _float_dtype(y_true, y_pred, sample_weight)
    yt = _numeric(y_true, "y_true", dtype)
    yp = _numeric(y_pred, "y_pred", dtype)
    _lengths(y_true=yt, y_pred=yp, sample_weight=sample_weight)
    for arr, name in ((yt, "y_true"), (yp, "y_pred")):
        _check_finite(arr, name)
    w = _sample_weight(sample_weight, yt.shape[0], dtype)
    yt = yt.reshape(yt.shape[0], -1)
    yp = yp.reshape(yp.shape[0], -1)
    if yt.shape[1] != yp.shape[1]:
        raise ValueError(f"y_true and y_pred have different numbers of outputs ({yt.shape[1]} != {yp.shape[1]})")
    k = yt.shape[1]
    if not isinstance(multioutput, str):
        multioutput = np.asarray(multioutput, dtype=np.float64)
        if k == 1:
            raise ValueError("multioutput weights are useful only with several outputs (y has 1 column)")
        if multioutput.shape != (k,):
            raise ValueError(f"multioutput must hold one weight per output ({k}), got shape {multioutput.shape}")
    return yt, yp, w, multioutput


def _check_multioutput(multioutput):
    """scikit-learn's check of the parameter itself: 'raw_values', 'uniform_average' or an array-like (a
    sequence or an array, not a scalar nor None)."""
    if isinstance(multioutput, str):
        if multioutput not in ("raw_values", "uniform_average"):
            raise _ParameterError("multioutput must be 'raw_values', 'uniform_average' or an array of one weight "
                                  f"per output, got {multioutput!r}")
        return multioutput
    if np.ndim(multioutput) == 0 or not (hasattr(multioutput, "__len__") or hasattr(multioutput, "__array__")):
        raise _ParameterError("multioutput must be 'raw_values', 'uniform_average' or an array of one weight per "
                              f"output, got {multioutput!r}")
    return multioutput


def _combine(per_output: np.ndarray, multioutput, dtype):
    """The per-output values combined as ``multioutput`` says: a float, or for 'raw_values' the array in
    ``dtype``, the dtype of the data (float32 data give float32 values, as in scikit-learn)."""
    if isinstance(multioutput, str) and multioutput == "raw_values":
        return per_output.astype(dtype, copy=False)
    if isinstance(multioutput, str):
        return float(np.mean(per_output))
    return float(np.average(per_output, weights=multioutput))


def _as_vector(y_true, y_pred, sample_weight):
    """The fast path's inputs, or None: 1-D float arrays of one dtype and length and valid weights (anything
    else goes through the full checks). Finiteness is checked on the result (see ``_kernel_mean``)."""
    if not (type(y_true) is np.ndarray and type(y_pred) is np.ndarray):
        return None
    dt = y_pred.dtype
    if (dt not in _FLOATS or y_true.dtype != dt or y_true.ndim != 1 or y_pred.shape != y_true.shape
            or y_true.size == 0):
        return None
    if sample_weight is not None:
        if not (type(sample_weight) is np.ndarray and sample_weight.shape == y_true.shape
                and sample_weight.dtype.kind == "f" and sample_weight.dtype.itemsize <= dt.itemsize):
            return None
        m = float(np.minimum.reduce(sample_weight))
        if not m >= 0 or not sample_weight.any():  # negative weights (scikit-learn allows them): NumPy path
            return None
    return y_true, y_pred


def _uniform(multioutput) -> bool:
    return isinstance(multioutput, str) and multioutput == "uniform_average"


def _kernel_mean(name: str, y_true, y_pred, sample_weight, **params):
    """fusedloss's weighted mean of an elementwise loss on 1-D inputs, or None where the checks would object
    (a non-finite input): the caller then runs the full path, which raises what scikit-learn would."""
    loss = LOSSES[name]
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=y_pred.dtype)
    value = loss(y_pred, y_true, sample_weight=w, **params)
    if math.isfinite(value):
        return value
    return None


# --- regression ----------------------------------------------------------------------------------------------


def mean_squared_error(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Mean squared error ``mean((y_true - y_pred)^2)``, as ``sklearn.metrics.mean_squared_error`` (the full
    square, like ``fl.mse``)."""
    multioutput = _check_multioutput(multioutput)
    if _uniform(multioutput) and (v := _as_vector(y_true, y_pred, sample_weight)) is not None:
        value = _kernel_mean("mse", *v, sample_weight)
        if value is not None:
            return value
    yt, yp, w, multioutput = _regression(y_true, y_pred, sample_weight, multioutput)
    return _combine(_average((yt - yp) ** 2, w), multioutput, yt.dtype)


def mean_absolute_error(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Mean absolute error, as ``sklearn.metrics.mean_absolute_error``."""
    multioutput = _check_multioutput(multioutput)
    if _uniform(multioutput) and (v := _as_vector(y_true, y_pred, sample_weight)) is not None:
        value = _kernel_mean("mae", *v, sample_weight)
        if value is not None:
            return value
    yt, yp, w, multioutput = _regression(y_true, y_pred, sample_weight, multioutput)
    return _combine(_average(np.abs(yp - yt), w), multioutput, yt.dtype)


def root_mean_squared_error(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Root mean squared error, as ``sklearn.metrics.root_mean_squared_error``: the square root per output,
    then the average over outputs (weights of ``multioutput`` are taken for a single output too)."""
    multioutput = _check_multioutput(multioutput)
    if _uniform(multioutput) and (v := _as_vector(y_true, y_pred, sample_weight)) is not None:
        value = _kernel_mean("mse", *v, sample_weight)
        if value is not None:
            return math.sqrt(value)
    yt, yp, w, _ = _regression(y_true, y_pred, sample_weight, "raw_values")
    per_output = np.sqrt(_average((yt - yp) ** 2, w))
    if isinstance(multioutput, str):
        return _combine(per_output, multioutput, yt.dtype)
    weights = np.asarray(multioutput)
    if weights.shape != per_output.shape:  # NumPy's average raises a TypeError, as in scikit-learn
        raise TypeError(f"multioutput must hold one weight per output ({per_output.size}), got shape "
                        f"{weights.shape}")
    return float(np.average(per_output, weights=weights))


def mean_absolute_percentage_error(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Mean absolute percentage error ``|y_pred - y_true| / max(|y_true|, eps)`` (a fraction, not times 100;
    ``eps`` the float64 machine epsilon), as ``sklearn.metrics.mean_absolute_percentage_error`` and ``fl.mape``."""
    multioutput = _check_multioutput(multioutput)
    if _uniform(multioutput) and (v := _as_vector(y_true, y_pred, sample_weight)) is not None:
        value = _kernel_mean("mape", *v, sample_weight)
        if value is not None:
            return value
    yt, yp, w, multioutput = _regression(y_true, y_pred, sample_weight, multioutput)
    eps = np.asarray(np.finfo(np.float64).eps, dtype=yt.dtype)
    return _combine(_average(np.abs(yp - yt) / np.maximum(np.abs(yt), eps), w), multioutput, yt.dtype)


def _log_targets(fn: str, *arrays) -> None:
    """scikit-learn's domain check of the logarithmic errors: every value above -1."""
    for arr in arrays:
        if float(np.minimum.reduce(arr, axis=None)) <= -1:
            raise ValueError(f"{fn} cannot be used when targets contain values less than or equal to -1.")


def _squared_log_errors(y_true, y_pred, sample_weight, multioutput, fn: str):
    """(per-output mean of (log1p(y_true) - log1p(y_pred))^2, multioutput, dtype of the data), checked as
    scikit-learn does."""
    yt, yp, w, multioutput = _regression(y_true, y_pred, sample_weight, multioutput)
    _log_targets(fn, yt, yp)
    return _average((np.log1p(yt) - np.log1p(yp)) ** 2, w), multioutput, yt.dtype


def _msle_kernel(y_true, y_pred, sample_weight, multioutput):
    """The fused msle mean of the common case (1-D, finite, every value above -1), else None."""
    if not _uniform(multioutput) or (v := _as_vector(y_true, y_pred, sample_weight)) is None:
        return None
    if not all(float(np.minimum.reduce(a)) > -1 for a in v):  # (nan too) the checked path says what is wrong
        return None
    return _kernel_mean("msle", *v, sample_weight)


def mean_squared_log_error(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Mean squared logarithmic error ``mean((log1p(y_true) - log1p(y_pred))^2)``, as
    ``sklearn.metrics.mean_squared_log_error`` (every value above -1) and ``fl.msle``."""
    fn = "Mean Squared Logarithmic Error"
    multioutput = _check_multioutput(multioutput)
    if (value := _msle_kernel(y_true, y_pred, sample_weight, multioutput)) is not None:
        return value
    return _combine(*_squared_log_errors(y_true, y_pred, sample_weight, multioutput, fn))


def root_mean_squared_log_error(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Root mean squared logarithmic error, as ``sklearn.metrics.root_mean_squared_log_error``: the square root
    of the mean squared logarithmic error per output, then the average over outputs."""
    fn = "Root Mean Squared Logarithmic Error"
    multioutput = _check_multioutput(multioutput)
    if (value := _msle_kernel(y_true, y_pred, sample_weight, multioutput)) is not None:
        return math.sqrt(value)
    per_output, multioutput, dtype = _squared_log_errors(y_true, y_pred, sample_weight, multioutput, fn)
    return _combine(np.sqrt(per_output), multioutput, dtype)


def _check_alpha(alpha, fn: str) -> float:
    """alpha as scikit-learn takes it: a real number in [0, 1] (a bool counts as 0 or 1, as in Python)."""
    if not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise _ParameterError(f"{fn}: alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _pinball(yt, yp, alpha):
    diff = yt - yp
    sign = (diff >= 0).astype(diff.dtype)
    return alpha * sign * diff - (1 - alpha) * (1 - sign) * diff


def mean_pinball_loss(y_true, y_pred, *, sample_weight=None, alpha=0.5, multioutput="uniform_average"):
    """Mean pinball (quantile) loss for the quantile ``alpha``, as ``sklearn.metrics.mean_pinball_loss``
    (``fl.quantile(pred, target, quantile=alpha)`` with the arguments swapped)."""
    alpha = _check_alpha(alpha, "mean_pinball_loss")
    multioutput = _check_multioutput(multioutput)
    if (0.0 < alpha < 1.0 and _uniform(multioutput)
            and (v := _as_vector(y_true, y_pred, sample_weight)) is not None):
        value = _kernel_mean("quantile", *v, sample_weight, quantile=alpha)
        if value is not None:
            return value
    yt, yp, w, multioutput = _regression(y_true, y_pred, sample_weight, multioutput)
    return _combine(_average(_pinball(yt, yp, alpha), w), multioutput, yt.dtype)


def _check_power(power, fn: str) -> float:
    """power as scikit-learn takes it: a finite real number in (-inf, 0] or [1, inf) (a bool counts as 0 or 1,
    as in Python)."""
    if not isinstance(power, numbers.Real) or 0.0 < power < 1.0 or not math.isfinite(power):
        raise _ParameterError(f"{fn}: power must be a number in (-inf, 0] or [1, inf), got {power!r}")
    return float(power)


_SCIPY_XLOGY = []


def _xlogy(x, y):
    """x log(y), 0 where x == 0: scipy.special.xlogy (one pass, what scikit-learn calls) when SciPy is there."""
    if not _SCIPY_XLOGY:
        try:
            from scipy.special import xlogy
        except ImportError:  # pragma: no cover - SciPy comes with scikit-learn, not with fusedloss
            xlogy = None
        _SCIPY_XLOGY.append(xlogy)
    if _SCIPY_XLOGY[0] is not None:
        return _SCIPY_XLOGY[0](x, y)
    return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def _tweedie_deviance(y, mu, p):
    """The unit Tweedie deviance per sample (scikit-learn's formulas, term by term)."""
    if p < 0:
        return 2 * (np.power(np.where(y > 0, y, 0.0), 2 - p) / ((1 - p) * (2 - p))
                    - y * np.power(mu, 1 - p) / (1 - p) + np.power(mu, 2 - p) / (2 - p))
    if p == 0:
        return (y - mu) ** 2
    if p == 1:
        return 2 * (_xlogy(y, y / mu) - y + mu)
    if p == 2:
        return 2 * (np.log(mu / y) + y / mu - 1)
    return 2 * (np.power(y, 2 - p) / ((1 - p) * (2 - p)) - y * np.power(mu, 1 - p) / (1 - p)
                + np.power(mu, 2 - p) / (2 - p))


def _tweedie_inputs(y_true, y_pred, sample_weight, power, fn):
    yt, yp, w, _ = _regression(y_true, y_pred, sample_weight, "uniform_average")
    if yt.shape[1] != 1:
        raise ValueError(f"{fn}: several outputs (y of shape {np.shape(y_true)}) are not supported; pass one "
                         "column at a time")
    yt, yp = yt[:, 0], yp[:, 0]
    _tweedie_domain(yt, yp, power, "mean_tweedie_deviance")
    return yt, yp, w


def _tweedie_domain(yt, yp, power, fn):
    """The domain of the Tweedie deviance of this power (the inputs are finite: one min() pass each)."""
    where = f"{fn} with power={power} can only be used on "
    if power < 0:
        if float(np.minimum.reduce(yp)) <= 0:
            raise ValueError(where + f"strictly positive y_pred, got {_first(yp, yp <= 0)}")
    elif 1 <= power < 2:
        if float(np.minimum.reduce(yt)) < 0:
            raise ValueError(where + f"non-negative y and strictly positive y_pred; y_true has {_first(yt, yt < 0)}")
        if float(np.minimum.reduce(yp)) <= 0:
            raise ValueError(where + f"non-negative y and strictly positive y_pred; y_pred has {_first(yp, yp <= 0)}")
    elif power >= 2:
        for arr, name in ((yt, "y_true"), (yp, "y_pred")):
            if float(np.minimum.reduce(arr)) <= 0:
                raise ValueError(where + f"strictly positive y and y_pred; {name} has {_first(arr, arr <= 0)}")


def _first(arr, bad):
    i = int(np.argmax(bad))
    return f"{arr[i].item()!r} at index {i}"


def mean_tweedie_deviance(y_true, y_pred, *, sample_weight=None, power=0):
    """Mean Tweedie deviance of power ``power`` (0: squared error, 1: Poisson, 2: Gamma), as
    ``sklearn.metrics.mean_tweedie_deviance``. ``y_pred`` is the mean (not its log, unlike ``fl.tweedie``)."""
    power = _check_power(power, "mean_tweedie_deviance")
    yt, yp, w = _tweedie_inputs(y_true, y_pred, sample_weight, power, "mean_tweedie_deviance")
    return float(_average(_tweedie_deviance(yt, yp, power), w))


def mean_poisson_deviance(y_true, y_pred, *, sample_weight=None):
    """Mean Poisson deviance, as ``sklearn.metrics.mean_poisson_deviance`` (y >= 0, y_pred > 0)."""
    return mean_tweedie_deviance(y_true, y_pred, sample_weight=sample_weight, power=1)


def mean_gamma_deviance(y_true, y_pred, *, sample_weight=None):
    """Mean Gamma deviance, as ``sklearn.metrics.mean_gamma_deviance`` (y > 0, y_pred > 0)."""
    return mean_tweedie_deviance(y_true, y_pred, sample_weight=sample_weight, power=2)


def _too_few(n: int) -> bool:
    if n < 2:
        warnings.warn("D^2 score is not well-defined with less than two samples.", _undefined_metric_category(),
                      stacklevel=3)
        return True
    return False


def d2_tweedie_score(y_true, y_pred, *, sample_weight=None, power=0):
    """D^2 for the Tweedie deviance (the fraction of deviance explained against the weighted mean of y_true),
    as ``sklearn.metrics.d2_tweedie_score``; nan (with an ``UndefinedMetricWarning``) for fewer than 2 samples."""
    power = _check_power(power, "d2_tweedie_score")
    yt, yp, w, _ = _regression(y_true, y_pred, sample_weight, "uniform_average")
    if yt.shape[1] != 1:
        raise ValueError(f"d2_tweedie_score: several outputs (y of shape {np.shape(y_true)}) are not supported")
    if _too_few(yt.shape[0]):
        return float("nan")
    y, mu = yt[:, 0], yp[:, 0]
    _tweedie_domain(y, mu, power, "mean_tweedie_deviance")
    numerator = float(_average(_tweedie_deviance(y, mu, power), w))
    y_avg = np.asarray(_average(y, w), dtype=y.dtype)  # a scalar against every sample, as scikit-learn
    denominator = float(_average(_tweedie_deviance(y, y_avg, power), w))
    return 1 - numerator / denominator  # (a constant y_true: ZeroDivisionError, as scikit-learn)


def _weighted_quantile_averaged(y: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """Per column of y (n, k): the alpha-quantile of the weighted empirical distribution, the mean of the two
    neighbouring order statistics where the cumulative weight hits alpha * total exactly (Hyndman and Fan's
    definition 2, "averaged inverted CDF"), as scikit-learn's D^2 pinball score takes it."""
    n, k = y.shape
    out = np.empty(k, dtype=y.dtype)
    eps = np.finfo(y.dtype).eps
    for j in range(k):
        order = np.argsort(y[:, j])
        ys, ws = y[order, j], w[order]
        cdf = np.cumsum(ws)
        target = alpha * cdf[-1]
        if target == 0:
            target = np.nextafter(target, target + 1)  # skip leading zero weights for alpha = 0
        i = min(int(np.searchsorted(cdf, target)), n - 1)
        if cdf[i] - target > eps:
            out[j] = ys[i]
            continue
        nxt = min(i + 1, n - 1)
        if ws[nxt] == 0:  # the next sample with weight: where the CDF next grows
            after = int(np.searchsorted(cdf, cdf[i], side="right"))
            nxt = i if after > n - 1 else after
        out[j] = (ys[i] + ys[nxt]) / 2
    return out


def d2_pinball_score(y_true, y_pred, *, sample_weight=None, alpha=0.5, multioutput="uniform_average"):
    """D^2 for the pinball loss (the fraction explained against the weighted alpha-quantile of y_true), as
    ``sklearn.metrics.d2_pinball_score``; nan (with an ``UndefinedMetricWarning``) for fewer than 2 samples."""
    alpha = _check_alpha(alpha, "d2_pinball_score")
    multioutput = _check_multioutput(multioutput)
    yt, yp, w, multioutput = _regression(y_true, y_pred, sample_weight, multioutput)
    n, k = yt.shape
    if _too_few(n):
        return float("nan")
    numerator = np.atleast_1d(_average(_pinball(yt, yp, alpha), w))
    ones = np.ones(n, dtype=yt.dtype) if w is None else w
    if not ones.any():  # pragma: no cover - _sample_weight refuses all-zero weights
        q = np.full(k, np.nan)
    else:
        q = _weighted_quantile_averaged(yt, ones, alpha)
    denominator = np.atleast_1d(_average(_pinball(yt, np.broadcast_to(q, yt.shape), alpha), ones))
    scores = np.ones(k, dtype=np.float64)
    valid = (numerator != 0) & (denominator != 0)
    scores[valid] = 1 - numerator[valid] / denominator[valid]
    scores[(numerator != 0) & (denominator == 0)] = 0.0
    return _combine(scores.astype(yt.dtype), multioutput, yt.dtype)


def d2_absolute_error_score(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """D^2 for the absolute error (against the weighted median), as ``sklearn.metrics.d2_absolute_error_score``."""
    return d2_pinball_score(y_true, y_pred, sample_weight=sample_weight, alpha=0.5, multioutput=multioutput)


# --- classification --------------------------------------------------------------------------------------------


def _labels_1d(y, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least 1 sample is needed")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} must hold class labels, got continuous values "
                             f"({_first(arr, arr != np.round(arr))})")
    elif arr.dtype.kind not in "biuUSO":
        raise ValueError(f"{name} must hold class labels, got dtype {arr.dtype}")
    return arr


def _encode(y: np.ndarray, labels=None):
    """(sorted classes, index of each y in them). With ``labels``: the classes are sorted(labels), and a y not
    among them raises."""
    if labels is None:
        if y.dtype.kind in "biu" and y.size:
            lo, hi = int(y.min()), int(y.max())
            if hi - lo <= 4 * y.size + 1024:  # small integer labels: counting, no sort
                present = np.bincount((y - lo).astype(np.intp), minlength=hi - lo + 1) > 0
                classes = np.flatnonzero(present) + lo
                lookup = np.cumsum(present) - 1
                return classes.astype(y.dtype), lookup[(y - lo).astype(np.intp)]
        classes, idx = np.unique(y, return_inverse=True)
        return classes, idx.reshape(-1)
    given = np.asarray(labels)
    classes = np.unique(given)
    if given.shape != classes.shape or not np.array_equal(classes, given):
        warnings.warn(f"Labels passed were {given.tolist()}. But this function assumes labels are ordered "
                      f"lexicographically. Pass the ordered labels={classes.tolist()} and ensure that the columns "
                      "of y_prob correspond to this ordering.", UserWarning, stacklevel=3)
    idx = np.searchsorted(classes, y)
    idx = np.minimum(idx, classes.size - 1)
    missing = classes[idx] != y
    if missing.any():
        raise ValueError(f"y_true contains values {set(np.asarray(y)[missing].tolist())} not belonging to the "
                         f"passed labels {given.tolist()}")
    return classes, idx


def _probabilities(y_true, y_proba, sample_weight, labels):
    """(P (n, C), class index per row or None, one-hot Y or None, weight) as scikit-learn validates them."""
    P = np.asarray(y_proba)
    if P.dtype not in _FLOATS:
        if P.dtype.kind not in "biuf":
            raise ValueError(f"y_proba must hold probabilities (numbers), got dtype {P.dtype}")
        P = P.astype(np.float64)
    if P.ndim == 0 or P.ndim > 2:
        raise ValueError(f"y_proba must be (n_samples,) or (n_samples, n_classes), got shape {P.shape}")
    if P.shape[0] == 0:
        raise ValueError("y_proba is empty: at least 1 sample is needed")
    _check_finite(P, "y_proba")
    if P.max() > 1:
        raise ValueError(f"y_proba contains values greater than 1: {P.max()}")
    if P.min() < 0:
        raise ValueError(f"y_proba contains values lower than 0: {P.min()}")
    yt = np.asarray(y_true)
    _lengths(y_true=yt, y_proba=P, sample_weight=sample_weight)
    w = _sample_weight(sample_weight, P.shape[0], np.float64, nonzero=True)
    Y = idx = None
    if yt.ndim == 2 and yt.shape[1] > 1:  # a label indicator matrix: used as given, columns are the classes
        if labels is not None:
            raise ValueError("labels cannot be given with a label indicator y_true")
        if not np.isin(yt, (0, 1)).all():
            raise ValueError("a 2-D y_true must be a label indicator matrix of 0 and 1")
        Y = yt.astype(P.dtype)
        n_classes = Y.shape[1]
    else:
        y1 = _labels_1d(yt, "y_true")
        classes, idx = _encode(y1, labels)
        if classes.size == 1:
            if labels is None:
                raise ValueError(f"y_true contains only one label ({classes[0]!r}). Please provide the list of "
                                 "all expected class labels explicitly through the labels argument.")
            raise ValueError(f"The labels array needs to contain at least two labels, got {classes.tolist()}.")
        n_classes = classes.size
    if P.ndim == 1:
        P = P[:, None]
    if P.shape[1] == 1:
        P = np.concatenate([1 - P, P], axis=1)
    eps = np.finfo(P.dtype).eps
    sums = P.sum(axis=1)
    if not np.all(np.abs(sums - 1) <= 1e-8 + math.sqrt(eps)):
        warnings.warn("The y_prob values do not sum to one. Make sure to pass probabilities.", UserWarning,
                      stacklevel=3)
    if n_classes != P.shape[1]:
        if labels is None:
            found = classes if Y is None else np.arange(n_classes)
            raise ValueError(f"y_true and y_proba contain different numbers of classes: {n_classes} vs "
                             f"{P.shape[1]}. Please provide the true labels explicitly through the labels "
                             f"argument. Classes found in y_true: {found}")
        raise ValueError(f"The number of classes in labels ({n_classes}) is different from that in y_proba "
                         f"({P.shape[1]}). Classes found in labels: {classes}")
    if Y is not None and Y.shape[1] == 1:  # pragma: no cover - excluded above (2-D y_true has > 1 column)
        Y = np.concatenate([1 - Y, Y], axis=1)
    return P, idx, Y, w


def _row_log_loss(P, idx, Y):
    """-sum_j Y_ij log(clip(P_ij)) per row: with hard labels only the true class's column counts."""
    eps = np.finfo(P.dtype).eps
    if Y is None:
        picked = np.take_along_axis(P, idx[:, None], axis=1)[:, 0]
        return -np.log(np.clip(picked, eps, 1 - eps))
    return -np.sum(_xlogy(Y, np.clip(P, eps, 1 - eps)), axis=1)


def _check_normalize(normalize, fn: str) -> None:
    """normalize as scikit-learn takes it: a bool or a NumPy bool, not a number standing for one."""
    if not isinstance(normalize, (bool, np.bool_)):
        raise _ParameterError(f"{fn}: normalize must be True or False (a bool or numpy.bool), got {normalize!r} "
                              f"of type {type(normalize).__name__}; pass bool(normalize)")


def _total(values, w, normalize: bool) -> float:
    if normalize:
        return float(_average(values, w))
    return float(np.sum(values if w is None else values * w, dtype=np.float64))


def _proba_alias(y_proba, y_pred, fn: str):
    """The probabilities, given as y_proba or under their former name y_pred (with scikit-learn's
    FutureWarning)."""
    if isinstance(y_pred, str) and y_pred == "deprecated":
        if y_proba is None:
            # scikit-learn raises a ValueError (log_loss) or a TypeError (d2_log_loss_score) here: this is both
            raise _ParameterError(f"{fn}: the predicted probabilities are missing (y_proba is None); pass them as "
                                  "y_proba")
        return y_proba
    if y_proba is not None:
        raise ValueError(f"{fn}: pass the probabilities as y_proba or as y_pred (its former name), not both")
    warnings.warn(f"{fn}: `y_pred` was renamed to `y_proba` in version 1.9 and will be removed in 1.11. Use "
                  "`y_proba` instead (the versions are scikit-learn's, whose signature this follows).",
                  FutureWarning, stacklevel=3)
    return y_pred


def log_loss(y_true, y_proba=None, *, normalize=True, sample_weight=None, labels=None, y_pred="deprecated"):
    """Log loss (cross-entropy of predicted probabilities), as ``sklearn.metrics.log_loss``.

    ``y_proba``: (n,) probabilities of the positive (larger) class, or (n, C) with the columns in sorted order
    of the classes. Values are clipped to ``[eps, 1 - eps]`` (``eps`` the machine epsilon of their dtype).
    ``y_true``: class labels of any sortable type (or a 0/1 label indicator matrix). ``y_pred=`` is accepted
    as the former name of ``y_proba``, with scikit-learn's FutureWarning. For logits use ``fl.cross_entropy`` /
    ``fl.binary_cross_entropy_with_logits`` (no clipping, stable).
    """
    _check_normalize(normalize, "log_loss")
    y_proba = _proba_alias(y_proba, y_pred, "log_loss")
    P, idx, Y, w = _probabilities(y_true, y_proba, sample_weight, labels)
    return _total(_row_log_loss(P, idx, Y), w, normalize)


def d2_log_loss_score(y_true, y_proba=None, *, sample_weight=None, labels=None, y_pred="deprecated"):
    """D^2 for the log loss (the fraction explained against predicting the weighted class frequencies), as
    ``sklearn.metrics.d2_log_loss_score``; nan (with an ``UndefinedMetricWarning``) for fewer than 2 samples."""
    y_proba = _proba_alias(y_proba, y_pred, "d2_log_loss_score")
    _lengths(y_true=np.asarray(y_true), y_proba=np.asarray(y_proba), sample_weight=sample_weight)
    if _too_few(np.shape(y_proba)[0] if np.ndim(y_proba) else 1):
        return float("nan")
    P, idx, Y, w = _probabilities(y_true, y_proba, sample_weight, labels)
    numerator = _total(_row_log_loss(P, idx, Y), w, False)
    C = P.shape[1]
    if Y is None:
        freq = np.bincount(idx, weights=w, minlength=C) / (idx.size if w is None else np.sum(w))
        null = np.broadcast_to(freq.astype(P.dtype), P.shape)
    else:
        null = np.broadcast_to(np.asarray(_average(Y, w), dtype=P.dtype), P.shape)
    denominator = _total(_row_log_loss(null, idx, Y), w, False)
    return float(1 - numerator / denominator)


def hinge_loss(y_true, pred_decision, *, labels=None, sample_weight=None):
    """Average hinge loss, as ``sklearn.metrics.hinge_loss``: binary (the larger label is +1, ``pred_decision``
    of shape (n,)) or multiclass Crammer-Singer (``pred_decision`` (n, C), columns in sorted label order)."""
    yt = _labels_1d(y_true, "y_true")
    D = np.asarray(pred_decision)
    if D.dtype.kind not in "biuf":
        raise TypeError(f"pred_decision must be an array of floats, got dtype {D.dtype}")
    D = D.astype(np.float64)  # scikit-learn computes the margins in float64 (its +-1 labels are integers)
    _lengths(y_true=yt, pred_decision=D, sample_weight=sample_weight)
    _check_finite(D, "pred_decision")
    w = None if sample_weight is None else _sample_weight(sample_weight, yt.shape[0], np.float64, nonzero=False)
    if w is not None and not np.sum(w):
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    n_unique = np.unique(yt if labels is None else np.asarray(labels)).size
    if n_unique > 2:
        if D.ndim <= 1:
            raise ValueError("with a multiclass target pred_decision must be (n_samples, n_classes), that is "
                             f"({yt.shape[0]}, {n_unique}); got {D.shape}")
        if n_unique != D.shape[1]:
            if labels is None:
                raise ValueError("Please include all labels in y_true or pass labels as third argument "
                                 f"(y_true has {n_unique} classes, pred_decision {D.shape[1]} columns)")
            raise ValueError("pred_decision is not consistent with the number of classes: it must be "
                             f"(n_samples, n_classes), that is ({yt.shape[0]}, {n_unique}); got {D.shape}")
        _, idx = _encode(yt, None if labels is None else np.unique(np.asarray(labels)))
        rows = np.arange(yt.shape[0])
        others = D.astype(np.float64, copy=True)
        others[rows, idx] = -np.inf
        margin = D[rows, idx] - others.max(axis=1)
        losses = np.maximum(1 - margin, 0)
        return float(np.average(losses, weights=w))
    if D.ndim == 2 and D.shape[1] == 1:
        D = D[:, 0]
    if D.ndim != 1:
        raise ValueError(f"pred_decision must be 1-D for a binary target, got shape {D.shape}")
    classes, idx = _encode(yt, None)
    # the larger of two classes is +1; a single class is -1 (as scikit-learn's LabelBinarizer(neg_label=-1))
    t = np.where(idx == 1, 1.0, -1.0).astype(D.dtype) if classes.size == 2 else np.full(D.shape, -1.0, D.dtype)
    if w is not None and float(w.min()) < 0:
        return float(np.average(np.maximum(1 - t * D, 0), weights=w))
    return float(LOSSES["hinge"](np.ascontiguousarray(D), t, sample_weight=w))


def zero_one_loss(y_true, y_pred, *, normalize=True, sample_weight=None):
    """Zero-one loss: the fraction (``normalize=False``: the weighted number) of misclassified samples, as
    ``sklearn.metrics.zero_one_loss``. Labels of any type; 2-D label indicator matrices count a row as wrong
    unless every label matches (subset loss)."""
    _check_normalize(normalize, "zero_one_loss")
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    _lengths(y_true=yt, y_pred=yp, sample_weight=sample_weight)
    multilabel = (yt.ndim == 2 and yt.shape[1] > 1) or (yp.ndim == 2 and yp.shape[1] > 1)
    if multilabel:
        if yt.shape != yp.shape:
            raise ValueError(f"label indicator matrices must have one shape, got y_true {yt.shape} and "
                             f"y_pred {yp.shape}")
        if yt.shape[0] == 0:
            raise ValueError("y_true is empty: at least 1 sample is needed")
        for arr, name in ((yt, "y_true"), (yp, "y_pred")):
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"a 2-D {name} must be a label indicator matrix of 0 and 1")
        correct = np.all(yt == yp, axis=1)
    else:
        yt, yp = _labels_1d(yt, "y_true"), _labels_1d(yp, "y_pred")
        text = {a.dtype.kind in "USO" for a in (yt, yp)}
        if len(text) > 1:
            raise ValueError(f"y_true and y_pred mix label types: {yt.dtype} and {yp.dtype}")
        correct = yt == yp
    n = correct.shape[0]
    w = _sample_weight(sample_weight, n, np.float64)
    if normalize:
        return float(1 - _average(correct.astype(np.float64), w))
    total = float(n if w is None else np.sum(w))
    return float(total - (np.sum(correct) if w is None else np.sum(w * correct)))
