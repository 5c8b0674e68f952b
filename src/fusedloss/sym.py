"""The building blocks of a custom loss formula (see ``fusedloss.elementwise_loss``).

A formula is a Python function of the prediction ``p``, the target ``y`` and the loss's parameters, written
with arithmetic (``+ - * / **``), ``abs``, comparisons, Python numbers and the functions below. fusedloss
calls it once with symbols (SymPy), derives the gradient and Hessian with respect to ``p`` exactly and
compiles value, gradient and Hessian into one kernel. So the function must not branch on its arguments
(``if p > y:`` raises; write ``where(p > y, a, b)``) nor call ``math`` or NumPy functions on them.

Conditions combine with ``&``, ``|`` and ``~`` (not ``and``, ``or``, ``not``). Stable evaluation:
``softplus``, ``log_sigmoid``, ``logcosh``, ``sigmoid`` and ``tanh`` and their derivatives are evaluated in
forms that neither overflow nor cancel; ``log(1 + x)`` and ``exp(x) - 1`` are rewritten to ``log1p`` and
``expm1``, and ``sqrt(1 + x^2) - 1`` to ``x^2 / (sqrt(1 + x^2) + 1)`` (with ``hypot``).

Non-smooth points follow the built-in losses' subgradient convention: ``abs`` has derivative
``sign(d)`` with ``sign(0) = 0``; the derivative of ``sign`` is 0; ``where(c, a, b)`` takes the derivative
of the branch it takes; ``maximum(a, b)`` / ``minimum(a, b)`` take the derivative of ``b`` at a tie (so
``maximum(x, 0)`` has derivative 0 at ``x = 0``, as ReLU in PyTorch); ``clip`` takes ``x``'s at its bounds.

Everything here needs SymPy (``pip install "fusedloss[custom]"``), imported on first use.
"""

from __future__ import annotations

__all__ = [
    "exp", "log", "log1p", "expm1", "sqrt", "tanh", "sigmoid", "softplus", "log_sigmoid", "logcosh", "where",
    "maximum", "minimum", "clip", "sign", "pow",
]


def _s():
    from . import _symbolic

    return _symbolic


def exp(x):
    """e^x."""
    return _s().sp.exp(x)


def log(x):
    """Natural logarithm (``log(1 + x)`` is evaluated as ``log1p(x)``)."""
    return _s().sp.log(x)


def log1p(x):
    """log(1 + x), accurate for small x."""
    return _s().Log1p(x)


def expm1(x):
    """e^x - 1, accurate for small x."""
    return _s().Expm1(x)


def sqrt(x):
    """Square root."""
    return _s().sp.sqrt(x)


def tanh(x):
    """Hyperbolic tangent; its derivative 1 - tanh^2 is evaluated as 4e/(1+e)^2, e = exp(-2|x|)."""
    return _s().Tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)), evaluated without overflow; derivative sigmoid(x) sigmoid(-x)."""
    return _s().Sigmoid(x)


def softplus(x):
    """log(1 + exp(x)) without overflow; derivative sigmoid(x)."""
    return _s().Softplus(x)


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x)."""
    return -_s().Softplus(-x)


def logcosh(x):
    """log(cosh(x)), accurate for every finite x; derivative tanh(x)."""
    return _s().LogCosh(x)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b`` (the derivative is that of the branch taken)."""
    return _s().where(condition, a, b)


def maximum(a, b):
    """The larger of ``a`` and ``b``; at a tie, the derivative of ``b``."""
    return _s().where(a > b, a, b)


def minimum(a, b):
    """The smaller of ``a`` and ``b``; at a tie, the derivative of ``b``."""
    return _s().where(a < b, a, b)


def clip(x, lo, hi):
    """``x`` limited to ``[lo, hi]``; at a bound, the derivative of ``x``."""
    s = _s()
    return s.where(x < lo, lo, s.where(x > hi, hi, x))


def sign(x):
    """-1, 0 or 1 (sign(0) = 0); its derivative is 0."""
    return _s().sp.sign(x)


def pow(x, y):  # noqa: A001 (the name users expect)
    """x ** y."""
    return _s().sp.Pow(x, y)
