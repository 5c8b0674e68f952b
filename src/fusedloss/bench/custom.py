"""Custom losses for ``fusedloss bench``: ``--loss custom_huber,custom_log_cosh`` defines them (with
``fusedloss.elementwise_loss``, as a user would) before the benchmark looks them up, so a custom loss's kernel
is timed against the built-in twin, NumPy and the other backends in the same run."""

from __future__ import annotations

from .. import sym


def _huber(p, y, delta):
    d = p - y
    return sym.where(abs(d) <= delta, d**2 / 2, delta * (abs(d) - delta / 2))


def _log_cosh(p, y):
    return sym.logcosh(p - y)


# benchmark name -> (formula, params=, the built-in loss it re-defines)
DEFINITIONS = {
    "custom_huber": (_huber, {"delta": (1.0, "positive")}, "huber"),
    "custom_log_cosh": (_log_cosh, {}, "log_cosh"),
}


def ensure(name: str) -> None:
    """Define the custom benchmark loss ``name`` if it is one and is not registered yet."""
    from .._spec import REGISTRY

    if name in DEFINITIONS and name not in REGISTRY:
        from .._custom import elementwise_loss

        fn, params, _ = DEFINITIONS[name]
        elementwise_loss(fn, params=params, name=name)
