"""Which kernels a CUDA tensor given to ``fusedloss.torch`` runs on: torch's own, or fusedloss's.

The rule, so that nobody gets a slower loss by default:

1. A loss, or an option of it, that torch does not have (``z_loss``, ``softcap``, ``confidence_penalty``,
   ``sample_weight``, ``inplace_grad``, ``metrics``, a class axis other than torch's, the losses without a
   ``torch.nn.functional`` twin, ...) runs on fusedloss's CUDA kernels: there is nothing of torch's to fall back to.
2. Otherwise, if the caller forces a path, that path: ``backend=...`` passed to the call (any backend: the
   caller asked for fusedloss), ``set_cuda_routing("fused" | "torch" | "auto")``, or the environment variable
   ``FUSEDLOSS_CUDA_ROUTING`` (read per call; ``set_cuda_routing`` wins over it).
3. Otherwise (``"auto"``) torch's kernels, unless the results file ``gpu_routing.json`` next to this module
   records a measurement on a real GPU where fusedloss's kernel was at least as fast as torch's for this case
   (same loss, dtype and set of options; size within the measured range).

``decide`` is the rule as a pure function of (loss, options, shape, dtype, table, forced mode); ``options_of``
reads the options off a call; ``torch_loss`` runs the same call through ``torch.nn.functional``, with the same
semantics (the tests check it against the fused path on CPU tensors). ``fusedloss.torch`` calls ``route`` once,
before autograd, so that on the torch path torch's own autograd and backward kernels run, with no extra pass.

The results file: ``{"schema": 1, "cases": [case, ...]}``, each case an object with ``loss``, ``dtype``
(``"float32"``, ``"bfloat16"``, ...), ``options`` (list of option names, may be empty), ``numel`` ([lo, hi],
elements of the input), optionally ``classes`` ([lo, hi], multiclass losses), ``fused_s`` and ``torch_s``
(median seconds of forward + backward at the measured size), ``device`` and ``command`` (how it was measured).
``benchmarks/gpu_bench.py --json`` prints rows in that form.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

MODES = ("auto", "torch", "fused")
ENV = "FUSEDLOSS_CUDA_ROUTING"
RESULTS_FILE = Path(__file__).with_name("gpu_routing.json")

# The losses torch has, and the options of each that torch's function takes with the same meaning. An option
# not listed (or a loss not here) has no torch equivalent. "weight": an elementwise weight of the input's shape
# with torch's meaning of "mean"; "soft_targets": class probabilities as targets.
TORCH_OPTIONS: dict[str, frozenset] = {
    "mse": frozenset({"weight"}),
    "mae": frozenset({"weight"}),
    "huber": frozenset({"delta", "weight"}),
    "smooth_l1": frozenset({"beta"}),
    "poisson_nll": frozenset({"log_input", "eps"}),
    "binary_cross_entropy": frozenset({"weight"}),
    "binary_cross_entropy_with_logits": frozenset({"weight", "pos_weight"}),
    "cross_entropy": frozenset({"class_weight", "ignore_index", "label_smoothing", "soft_targets"}),
    "multi_margin": frozenset({"margin", "p", "class_weight"}),
    # torch's classes are on the last dim too: any class_dim it reports is torch's
    "multilabel_soft_margin": frozenset({"class_weight", "soft_targets", "class_dim"}),
    "hinge_embedding": frozenset({"margin"}),
}
# torch's weighted "mean" is sum(w l) / sum(w) for these (as fusedloss's), mean(w l) for the others
_SUM_W_MEAN = frozenset({"mse", "mae"})

_forced: list = [None]  # set_cuda_routing's mode, None when unset


def set_cuda_routing(mode: str | None) -> None:
    """Force the path for CUDA tensors: "fused" (fusedloss's kernels), "torch" (torch's, where torch has the
    loss and options), "auto" (torch's unless measured slower, see the module docstring), or None (back to the
    environment variable ``FUSEDLOSS_CUDA_ROUTING``, default "auto")."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"set_cuda_routing: mode must be one of {', '.join(map(repr, MODES))} or None, "
                         f"got {mode!r}")
    _forced[0] = mode


def get_cuda_routing() -> str:
    """The mode in force: ``set_cuda_routing``'s, else ``FUSEDLOSS_CUDA_ROUTING``'s, else "auto"."""
    if _forced[0] is not None:
        return _forced[0]
    env = os.environ.get(ENV, "").strip().lower()
    if not env:
        return "auto"
    if env not in MODES:
        raise ValueError(f"{ENV}={env!r} is not a routing mode; expected one of {', '.join(MODES)} "
                         f"(or unset it)")
    return env


def forced_mode(call_backend) -> str:
    """The mode for one call: an explicit ``backend=`` (other than "auto") forces the fused path."""
    if call_backend is not None and call_backend != "auto":
        return "fused"
    return get_cuda_routing()


# --- the results table -------------------------------------------------------------------------------------


def _range(case: dict, key: str, where: str) -> tuple[int, int]:
    v = case[key]
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(e, int) for e in v) and v[0] <= v[1]):
        raise ValueError(f"{where}: {key!r} must be [lo, hi] with integers lo <= hi, got {v!r}")
    return v[0], v[1]


def parse_table(data, where: str = "routing table") -> tuple[dict, ...]:
    """The cases of a results table (the decoded JSON), checked; raises ValueError naming what is wrong."""
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("cases"), list):
        raise ValueError(f"{where}: expected an object {{\"schema\": 1, \"cases\": [...]}}")
    cases = []
    for i, case in enumerate(data["cases"]):
        at = f"{where}, case {i}"
        if not isinstance(case, dict):
            raise ValueError(f"{at}: expected an object, got {type(case).__name__}")
        for key in ("loss", "dtype", "numel", "fused_s", "torch_s"):
            if key not in case:
                raise ValueError(f"{at}: missing {key!r}")
        for key in ("fused_s", "torch_s"):
            if not (isinstance(case[key], (int, float)) and case[key] > 0 and math.isfinite(case[key])):
                raise ValueError(f"{at}: {key!r} must be a positive number of seconds, got {case[key]!r}")
        options = case.get("options", [])
        if not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
            raise ValueError(f"{at}: 'options' must be a list of option names, got {options!r}")
        out = {"loss": str(case["loss"]), "dtype": str(case["dtype"]), "options": frozenset(options),
               "numel": _range(case, "numel", at), "fused_s": float(case["fused_s"]),
               "torch_s": float(case["torch_s"])}
        if "classes" in case:
            out["classes"] = _range(case, "classes", at)
        cases.append(out)
    return tuple(cases)


_TABLE: list = []


def load_table(path: Path = RESULTS_FILE) -> tuple[dict, ...]:
    """The cases of the repository's results file (read once; a missing file means no case)."""
    if path == RESULTS_FILE and _TABLE:
        return _TABLE[0]
    if not path.exists():
        cases = ()
    else:
        with open(path, encoding="utf-8") as f:
            cases = parse_table(json.load(f), str(path))
    if path == RESULTS_FILE:
        _TABLE.append(cases)
    return cases


def measured_faster(table, loss: str, options: frozenset, shape: tuple, dtype: str) -> bool:
    """Whether a case of ``table`` covers this call and shows fusedloss at least as fast as torch.

    ``shape`` is the input's shape with the class axis last for multiclass losses."""
    numel = math.prod(shape)
    classes = shape[-1] if shape else 1
    for case in table:
        if case["loss"] != loss or case["dtype"] != dtype or case["options"] != options:
            continue
        lo, hi = case["numel"]
        if not lo <= numel <= hi:
            continue
        if "classes" in case and not case["classes"][0] <= classes <= case["classes"][1]:
            continue
        if case["fused_s"] <= case["torch_s"]:
            return True
    return False


def decide(loss: str, options, shape: tuple, dtype: str, table, forced: str = "auto") -> str:
    """"torch" or "fused" for a CUDA call: the rule of the module docstring, as a pure function."""
    if forced not in MODES:
        raise ValueError(f"decide: forced must be one of {', '.join(MODES)}, got {forced!r}")
    options = frozenset(options)
    allowed = TORCH_OPTIONS.get(loss)
    if allowed is None or not options <= allowed or forced == "fused":
        return "fused"
    if forced == "torch":
        return "torch"
    return "fused" if measured_faster(table, loss, options, tuple(shape), dtype) else "torch"


# --- reading a call, running it on torch -------------------------------------------------------------------


def options_of(call, input, target) -> frozenset:
    """The options a ``fusedloss.torch`` call uses, in ``TORCH_OPTIONS``' vocabulary."""
    options = set(call.params)  # only the parameters that differ from the defaults
    for key in ("softcap", "pos_weight", "class_weight", "alpha"):  # None is their default
        if key in options and call.params[key] is None:
            options.discard(key)
    sw = call.sample_weight
    if sw is not None:
        if (call.class_dim is None and tuple(sw.shape) == tuple(input.shape)
                and (call.name in _SUM_W_MEAN or call.reduction != "mean")):
            options.add("weight")
        else:
            options.add("sample_weight")
    if call.class_dim is not None:
        if call.class_dim != (1 if input.ndim >= 2 else 0):
            options.add("class_dim")
        if getattr(target, "is_floating_point", lambda: False)() and tuple(target.shape) == tuple(input.shape):
            options.add("soft_targets")
    if call.inplace:
        options.add("inplace_grad")
    if getattr(call, "metrics", None) is not None:  # computed in the fused pass only
        options.add("metrics")
    return frozenset(options)


def _dtype_name(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _kernel_shape(call, input) -> tuple:
    shape = tuple(input.shape)
    if call.class_dim is not None and shape:
        shape = shape[:call.class_dim] + shape[call.class_dim + 1:] + (shape[call.class_dim],)
    return shape


def torch_loss(call, input, target):
    """The call computed by ``torch.nn.functional`` (differentiable through torch's autograd); only for calls
    whose options ``TORCH_OPTIONS`` lists."""
    import torch
    import torch.nn.functional as F

    from ._spec import REGISTRY

    spec = REGISTRY[call.name]
    p = {**spec.defaults(), **call.params}
    dev, dt = input.device, input.dtype

    def vec(v):
        return None if v is None else torch.as_tensor(v, dtype=dt, device=dev).reshape(-1)

    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target, device=dev)
    red = call.reduction
    name = call.name
    if name == "cross_entropy":
        if target.is_floating_point() and target.dtype != dt:
            target = target.to(dt)
        return F.cross_entropy(input, target, weight=vec(p["class_weight"]), ignore_index=int(p["ignore_index"]),
                               reduction=red, label_smoothing=float(p["label_smoothing"]))
    if name == "multi_margin":
        return F.multi_margin_loss(input, target, p=int(p["p"]), margin=float(p["margin"]),
                                   weight=vec(p["class_weight"]), reduction=red)
    if target.dtype != dt:
        target = target.to(dt)
    if name == "multilabel_soft_margin":
        return F.multilabel_soft_margin_loss(input, target, weight=vec(p["class_weight"]), reduction=red)
    w = None if call.sample_weight is None else call.sample_weight.to(device=dev, dtype=dt)
    if name == "mse":
        return F.mse_loss(input, target, reduction=red, weight=w)
    if name == "mae":
        return F.l1_loss(input, target, reduction=red, weight=w)
    if name == "huber":
        return F.huber_loss(input, target, reduction=red, delta=float(p["delta"]), weight=w)
    if name == "smooth_l1":
        return F.smooth_l1_loss(input, target, reduction=red, beta=float(p["beta"]))
    if name == "hinge_embedding":
        return F.hinge_embedding_loss(input, target, margin=float(p["margin"]), reduction=red)
    if name == "poisson_nll":
        return F.poisson_nll_loss(input, target, log_input=bool(p["log_input"]), eps=float(p["eps"]), reduction=red)
    if name == "binary_cross_entropy":
        return F.binary_cross_entropy(input, target, weight=w, reduction=red)
    if name == "binary_cross_entropy_with_logits":
        return F.binary_cross_entropy_with_logits(input, target, weight=w, reduction=red,
                                                  pos_weight=vec(p["pos_weight"]))
    raise AssertionError(f"torch_loss: no torch twin for {name!r}; TORCH_OPTIONS and torch_loss disagree")


def route(call, input, target):
    """For a CUDA ``input``: torch's result when the rule picks torch, else None (run the fused kernels)."""
    options = options_of(call, input, target)
    forced = forced_mode(call.backend)
    if decide(call.name, options, _kernel_shape(call, input), _dtype_name(input.dtype), load_table(),
              forced) == "torch":
        return torch_loss(call, input, target)
    return None
