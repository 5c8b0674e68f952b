"""What the fused kernels do not give, taken from torch's own function, for the forms named after torch's
(``torch_twin``): their derivatives, and the inputs they take, must be torch's.

The kernels give the first derivative with respect to the inputs they differentiate (``Twin.fused_grads``: the
input, the target too for a loss of the residual, every input of a pairwise loss), and check their inputs more
strictly than torch does. So:

- A call in grad mode where another tensor argument requires grad (a target of soft labels from a model, a
  learnable ``weight``) runs on torch's function with the same arguments: its gradient with respect to that
  tensor is then torch's.
- A backward pass with ``create_graph=True`` (a Hessian-vector product, MAML's inner step) through a fused call
  differentiates torch's function at the same tensors (``second_order``): the first derivative it returns,
  and every derivative of it, are torch's. So that this is possible, a fused call in grad mode keeps a reference
  to its input tensors (no copy) until the backward pass reaches it; one without ``create_graph`` lets them go
  there, so a later ``create_graph=True`` pass through a graph kept with ``retain_graph=True`` raises.
- A call the fused form refuses with a ``ValueError`` that torch's function takes (a target outside the loss's
  domain, a negative weight, an input smaller than its target, which torch broadcasts) gets torch's result;
  one that torch refuses too raises the fused form's error, which names the argument (``Twin.instead``).

All three apply only where every fusedloss extension keyword (``backend``, ``sample_weight``, ``metrics``, ...) is
at its default: torch's function has no such option. Under ``torch.func`` transforms the fused rules hold
(second derivatives refused).
"""

from __future__ import annotations

import contextvars
import inspect

import torch
from torch import Tensor

from .._spec import REGISTRY

# The torch call that a fused call in progress stands for: (Twin, args, kwargs), set by ``Twin.run`` for the
# kernel call's autograd Function to keep (``keep``).
_CURRENT = contextvars.ContextVar("fusedloss_torch_twin", default=None)

_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


class Twin:
    """A form named after ``torch.nn.functional.<torch_name>``: which of its arguments the fused kernels
    differentiate (``fused_grads``), and its keywords that torch's function lacks (``extensions``, name and
    default)."""

    __slots__ = ("torch_fn", "names", "extensions", "fused_grads")

    def __init__(self, form, loss: str):
        spec = REGISTRY[loss]
        self.torch_fn = getattr(torch.nn.functional, spec.torch_name)
        theirs = inspect.signature(self.torch_fn).parameters
        ours = inspect.signature(form).parameters
        self.names = tuple(k for k, p in ours.items() if p.kind is _POSITIONAL)
        self.extensions = tuple((k, p.default) for k, p in ours.items() if k not in theirs)
        if spec.kind == "pairwise":
            self.fused_grads = frozenset(spec.inputs)
        else:
            self.fused_grads = frozenset(("input", "target") if spec.residual else ("input",))
        if not self.fused_grads <= set(self.names):
            raise TypeError(f"{form.__qualname__}: its inputs {sorted(self.fused_grads)} must be named as torch's "
                            f"{spec.torch_name}'s")

    def torch_kwargs(self, kwargs: dict) -> dict | None:
        """``kwargs`` without the extensions, or None when one is not at its default (torch cannot run the call)."""
        out = dict(kwargs)
        for k, default in self.extensions:
            if k in out:
                v = out.pop(k)
                if not (v is default or (not isinstance(v, Tensor) and type(v) is type(default) and v == default)):
                    return None
        return out

    def grads_wanted(self, args: tuple, kwargs: dict) -> tuple[bool, bool]:
        """(whether a tensor argument requires grad, whether one that the fused kernels do not differentiate
        does)."""
        any_grad = other = False
        names = self.names
        for i, v in enumerate(args):
            if isinstance(v, Tensor) and v.requires_grad:  # (an nn.Parameter too)
                any_grad = True
                if i >= len(names) or names[i] not in self.fused_grads:
                    other = True
        for k, v in kwargs.items():
            if isinstance(v, Tensor) and v.requires_grad:
                any_grad = True
                if k not in self.fused_grads:
                    other = True
        return any_grad, other

    def run(self, fused, args: tuple, kwargs: dict):
        """The call ``fused(*args, **kwargs)`` of the form, or torch's function where it must give the derivatives
        or where it takes what the fused form refuses (see the module's docstring)."""
        token = None
        if torch.is_grad_enabled():
            any_grad, other = self.grads_wanted(args, kwargs)
            if any_grad:
                kw = self.torch_kwargs(kwargs)
                if kw is not None:
                    if other:
                        return self.torch_fn(*args, **kw)
                    token = _CURRENT.set((self, args, kw))
        try:
            return fused(*args, **kwargs)
        except ValueError as refused:
            return self.instead(refused, args, kwargs)
        finally:
            if token is not None:
                _CURRENT.reset(token)

    def instead(self, refused: ValueError, args: tuple, kwargs: dict):
        """A call the fused form refused: torch's function's result where torch takes it (a target outside the
        loss's domain, a negative weight, an input that broadcasts against a larger target ...), else the fused
        form's error, which names the argument."""
        kw = self.torch_kwargs(kwargs)
        if kw is None:
            raise refused
        try:
            return self.torch_fn(*args, **kw)
        except Exception:  # noqa: BLE001 - torch refuses it too: the fused form's message says why
            raise refused from None


def keep(ctx, tensors: dict) -> None:
    """In an autograd Function's ``setup_context``: when its call stands for a torch call (``Twin.run``), keep
    that call and the Function's input tensors (by the form's argument names) for ``second_order``."""
    current = _CURRENT.get()
    if current is None or torch._C._functorch.peek_interpreter_stack() is not None:
        ctx.twin = None
        return
    ctx.twin = (current, tensors, {k: t._version for k, t in tensors.items()})


def release(ctx) -> None:
    """A backward pass without create_graph: the kept tensors are not needed any more."""
    ctx.twin = None


def second_order(ctx, grad_output: Tensor, message: str) -> dict:
    """Under ``backward(create_graph=True)``: the gradients (name -> tensor, for the kept tensors that require
    grad) of torch's function at the kept tensors, times ``grad_output``, with their graph. Raises ``message``
    (a RuntimeError) where the call kept nothing."""
    kept = ctx.twin
    if kept is None:
        raise RuntimeError(message)
    (twin, args, kwargs), tensors, versions = kept
    for k, t in tensors.items():
        if t._version != versions[k]:
            raise RuntimeError(f"{twin.torch_fn.__name__}: {k} was modified by an in-place operation after the loss "
                               "was computed; its second derivative needs it as it was")
    bound = dict(zip(twin.names, args))
    bound.update(kwargs)
    bound.update(tensors)  # the tensors the kernel saw (promoted, expanded): gradients flow back through them
    wanted = {k: t for k, t in tensors.items() if t.requires_grad}
    with torch.enable_grad():
        value = twin.torch_fn(**bound)
        grads = torch.autograd.grad(value, list(wanted.values()), grad_output, create_graph=True, allow_unused=True)
    return {k: (torch.zeros_like(t) if g is None else g) for (k, t), g in zip(wanted.items(), grads)}


def torch_twin(loss: str):
    """Decorator of the form named after registry loss ``loss``'s torch function (see the module's docstring)."""

    def wrap(form):
        twin = Twin(form, loss)

        def twinned(*args, **kwargs):
            return twin.run(form, args, kwargs)

        twinned.__name__, twinned.__qualname__, twinned.__doc__ = form.__name__, form.__qualname__, form.__doc__
        twinned.__module__, twinned.__wrapped__ = form.__module__, form
        twinned.__signature__ = inspect.signature(form)
        twinned._twin = twin
        return twinned

    return wrap
