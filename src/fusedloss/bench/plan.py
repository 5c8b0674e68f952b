"""The options of ``fusedloss bench``, checked before any work.

Everything a run needs is decided here, from the parsed arguments alone: which cases, which contestants, the
timing settings, where the results go. A bad option raises ``UsageError`` naming the option, what was given and
what is expected (``fusedloss bench`` then exits with status 2), so that a mistake never costs a benchmark run
first and never falls back silently to the defaults.

Sizes follow the kind of loss: elementwise losses take ``N`` (``1e6``), multiclass losses ``ROWSxCLASSES``
(``4096x1000``). Every ``--size`` must fit at least one of the losses run. With ``--loss``, every named loss
needs at least one size of its own form; without ``--loss``, the losses run are those of the forms given.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .. import _config
from . import custom
from .cases import (CASE_DEFS, DTYPES, KIND_NDIM, case_def, format_shape, make_cases, minimal_bytes, parse_size,
                    registered_case_defs)
from .contestants import host_backends
from .machine import machine_kind
from .peers import PEERS, peer_status
from .report import load_results

FORM = {1: "N (e.g. 1e6)", 2: "ROWSxCLASSES (e.g. 4096x1000)"}  # the size form of each number of axes
NDIM = KIND_NDIM
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "webp", "eps", "ps", "tif", "tiff")


class UsageError(Exception):
    """A bad command line: the message names the option, what was given and what is expected."""


def split(values) -> list[str]:
    """Repeated options and commas: ['mse,huber', 'log_cosh'] -> ['mse', 'huber', 'log_cosh']."""
    out = []
    for v in values or ():
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


# --- single options ----------------------------------------------------------------------------------


def parse_threads(values) -> list[int]:
    out = []
    for text in split(values):
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"--threads: expected whole numbers >= 1 (e.g. --threads 1,2), got {text!r}")
        out.append(n)
    return out


def parse_sizes(values) -> list[tuple]:
    sizes = []
    for text in split(values):
        try:
            sizes.append(parse_size(text))
        except ValueError:
            raise UsageError(f"--size: expected N (e.g. 1e6) for elementwise losses or ROWSxCLASSES (e.g. "
                             f"4096x1000) for multiclass ones, positive whole numbers; got {text!r}") from None
    return sizes


def parse_dtypes(values) -> list[str]:
    dtypes = split(values) or ["float32"]
    for d in dtypes:
        if d not in DTYPES:
            raise UsageError(f"--dtype: expected {' or '.join(DTYPES)}, got {d!r}")
    return list(dict.fromkeys(dtypes))


def at_least(option: str, value, bound, default, strict: bool = False):
    """``value`` (or ``default`` when the option was not given), checked to be >= bound (> bound if strict)."""
    if value is None:
        return default
    ok = (value > bound) if strict else (value >= bound)
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise UsageError(f"{option}: expected a number {'>' if strict else '>='} {bound:g}, got {value:g}")
    return value


def check_output(option: str, path: str | None, taken: dict) -> None:
    """Fail now, not after the run, when ``path`` cannot be written: a directory, a missing or read-only
    directory, a read-only file, or the same file as another output option."""
    if path is None:
        return
    real = os.path.realpath(path)
    if real in taken:
        raise UsageError(f"{option} {path}: the same file as {taken[real]}; give each output its own file")
    taken[real] = option
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory; expected a file name, e.g. {os.path.join(path, 'run')}"
                         f"{'.png' if option == '--plot' else '.' + option[2:]}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: the directory {parent} does not exist; create it first")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: the file exists and is not writable")
    if not os.path.exists(path) and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot create a file in {parent} (no write permission)")


def check_plot(path: str | None) -> None:
    if path is None:
        return
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: expected a file name ending in one of "
                         f"{', '.join('.' + e for e in PLOT_FORMATS[:4])}, ...; got {'.' + ext if ext else 'none'}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib (or the 'bench' extra: "
                         "pip install 'fusedloss[bench]')") from None


def check_outputs(args, plot: bool = True) -> None:
    taken: dict = {}
    for option in ("--json", "--csv", "--plot"):
        check_output(option, getattr(args, option[2:], None), taken)
    if plot:
        check_plot(args.plot)


# --- losses, sizes, contestants ----------------------------------------------------------------------


def select_defs(names, quick: bool):
    from .._spec import REGISTRY

    if not names:
        defs = registered_case_defs(quick)
        if not defs:
            raise UsageError("no registered loss has a benchmark case")
        return defs
    defs = []
    for name in dict.fromkeys(names):
        custom.ensure(name)  # custom_huber, custom_log_cosh: defined on request
        if name not in REGISTRY:
            if name in CASE_DEFS:
                raise UsageError(f"--loss {name}: has a benchmark case but is not registered in this build")
            raise UsageError(f"--loss: unknown loss {name!r}; expected one of {', '.join(REGISTRY)}")
        if not REGISTRY[name].differentiable:
            raise UsageError(f"--loss {name}: has no gradient to benchmark")
        d = case_def(name)
        if d is None:
            raise UsageError(f"--loss {name}: has no benchmark case (bench/cases.py) in this version")
        defs.append(d)
    return defs


def match_sizes(defs, sizes, losses_given: bool) -> tuple[list, list[str]]:
    """The case definitions to run with ``sizes`` (parsed shapes), and notes to print. See the module doc."""
    if not sizes:
        return defs, []
    given = {n for n in (len(s) for s in sizes)}
    kinds = {d.kind for d in defs}
    for s in sizes:
        fits = [k for k in kinds if NDIM[k] == len(s)]
        if not fits:
            form = "an N size, for elementwise losses" if len(s) == 1 else \
                "a ROWSxCLASSES size, for multiclass losses"
            takes = []
            for k in sorted(kinds):
                names = [d.loss for d in defs if d.kind == k]
                takes.append(f"{', '.join(names)} take{'s' if len(names) == 1 else ''} {FORM[NDIM[k]]}")
            raise UsageError(f"--size {format_shape(s)}: {form}, fits no loss of this run: "
                             f"{'; '.join(takes)}")
    if losses_given:
        for d in defs:
            if NDIM[d.kind] not in given:
                raise UsageError(f"--size: {d.loss} is a {d.kind} loss and takes {FORM[NDIM[d.kind]]}, but --size "
                                 f"gives only {', '.join(format_shape(s) for s in sizes)}; add a size of that form "
                                 "or leave the loss out")
        return defs, []
    kept = [d for d in defs if NDIM[d.kind] in given]
    dropped = sorted({d.kind for d in defs} - {d.kind for d in kept})
    notes = [f"--size gives no {FORM[NDIM[k]].split(' ')[0]} size: the {k} losses are left out" for k in dropped]
    return kept, notes


def check_memory(cases) -> None:
    """Refuse a case whose arrays alone would not fit in this machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    for c in cases:
        need = 2 * minimal_bytes(c)  # the arrays, a reference copy and the contestants' outputs
        if need > 0.8 * total:
            raise UsageError(f"--size {c.size_text}: a {c.dtype} {c.loss} case needs about {need / 2**30:.1f} GiB, "
                             f"more than this machine's {total / 2**30:.1f} GiB; give a smaller size")


def select_backends(names):
    table = {b["name"]: b for b in host_backends()}
    if not names:
        return [n for n, b in table.items() if b["available"]]
    for n in names:
        if n not in table:
            raise UsageError(f"--backend: unknown host backend {n!r}; expected one of {', '.join(table)}")
        if not table[n]["available"]:
            raise UsageError(f"--backend {n}: not available: {table[n].get('reason', '?')}")
    return list(dict.fromkeys(names))


def select_peers(args):
    if args.no_peers:
        if args.peer:
            raise UsageError("--no-peers and --peer contradict each other; give one of them")
        return []
    names = split(args.peer)
    for n in names:
        if n not in PEERS:
            raise UsageError(f"--peer: unknown peer {n!r}; expected one of {', '.join(PEERS)}")
        ok, why = peer_status(n)
        if not ok:
            raise UsageError(f"--peer {n}: not installed: {why}")
    if names:
        return list(dict.fromkeys(names))
    return [p for p in PEERS if peer_status(p)[0]]


# --- the two modes -----------------------------------------------------------------------------------


@dataclass
class BenchPlan:
    cases: list
    dtypes: list
    threads: list
    backends: list
    peers: list
    repeat: int
    warmup: int
    budget_s: float
    sample_time_ms: float
    max_slowdown: float
    baseline: dict | None = None
    notes: list = field(default_factory=list)


def plan_bench(args) -> BenchPlan:
    """Check every option of a ``fusedloss bench`` run and decide the run; raises ``UsageError``."""
    repeat = at_least("--repeat", args.repeat, 1, 5 if args.quick else 7)
    warmup = at_least("--warmup", args.warmup, 0, 1 if args.quick else 2)
    budget = at_least("--max-time", args.max_time, 0, 0.5 if args.quick else 2.0, strict=True)
    sample_ms = at_least("--sample-time", args.sample_time, 0, 2.0, strict=True)
    at_least("--triad", args.triad, 0, None, strict=True)
    at_least("--busy", args.busy, 0, 0)
    if args.max_slowdown is not None and not args.compare:
        raise UsageError("--max-slowdown: applies to --compare only; give --compare BASELINE.json or drop it")
    max_slowdown = at_least("--max-slowdown", args.max_slowdown, 1, 1.25, strict=True)
    if args.triad and args.refresh_triad:
        raise UsageError("--triad and --refresh-triad contradict each other (a given bandwidth is not measured)")
    check_outputs(args)
    baseline = None
    if args.compare:
        baseline = {"rows": []}
        kind = machine_kind()
        for i, path in enumerate(split([args.compare])):
            try:
                results = load_results(path)
                rows, same = results["rows"], machine_kind(results.get("machine") or {}) == kind
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"--compare {path}: cannot read it as a results file: {exc}") from None
            # each file's ratios are taken within that file (its own NumPy peer); guard.numpy_ratios
            baseline["rows"] += [{**r, "baseline": i, "same_kind": same} for r in rows]

    dtypes = parse_dtypes(args.dtype)
    sizes = parse_sizes(args.size)
    threads = parse_threads(args.threads) or [_config.get_num_threads()]
    loss_names = split(args.loss)
    defs, notes = match_sizes(select_defs(loss_names, args.quick), sizes, bool(loss_names))
    cases = make_cases(defs, dtypes, sizes, threads, quick=args.quick)
    check_memory(cases)
    backends = select_backends(split(args.backend))
    peers = select_peers(args)  # imports the installed peers (seconds for torch and jax): last
    if baseline is not None and "numpy" not in peers:
        raise UsageError("--compare measures ratios to the NumPy peer: do not drop it (--no-peers / --peer)")
    if not backends and not peers:
        raise UsageError("nothing to time: no backend and no peer (check --backend, --peer, --no-peers)")
    return BenchPlan(cases=cases, dtypes=dtypes, threads=threads, backends=backends, peers=peers, repeat=repeat,
                     warmup=warmup, budget_s=budget, sample_time_ms=sample_ms, max_slowdown=max_slowdown,
                     baseline=baseline, notes=notes)


# The options of `fusedloss bench` that the --torch-module mode uses (besides --torch-module itself and --clock,
# which it takes as wall only), and those it refuses rather than ignores: option -> why, where its name does not
# say it. tests/test_bench_cases.py fails for an option of the command line in neither.
TORCH_MODULE_OPTIONS = ("quick", "size", "dtype", "threads", "backend", "repeat", "warmup", "max_time", "sample_time",
                        "json", "csv")
_NOT_FOR_TORCH_MODULE = {
    "loss": "the module is chosen by --size: ROWSxCLASSES times CrossEntropyLoss, N times MSELoss",
    "peer": "the peer is torch.nn itself", "no_peers": "the peer is torch.nn itself",
    "compare": "", "max_slowdown": "", "triad": "", "refresh_triad": "", "busy": "",
    "plot": "it draws GB/s per backend", "note": "",
}


def option_flag(dest: str) -> str:
    """The command-line spelling of an option's argparse name: max_time -> --max-time."""
    return "--" + dest.replace("_", "-")


@dataclass
class TorchModulePlan:
    cases: tuple
    dtypes: list
    threads: list
    backend: str | None
    repeat: int
    warmup: int
    budget_s: float
    sample_time_ms: float


def plan_torch_module(args, quick_cases, full_cases) -> TorchModulePlan:
    for attr, why in _NOT_FOR_TORCH_MODULE.items():
        if getattr(args, attr, None) not in (None, False):
            takes = [option_flag(o) for o in TORCH_MODULE_OPTIONS]
            raise UsageError(f"{option_flag(attr)}{f' ({why})' if why else ''} does not apply to --torch-module; "
                             f"leave it out (--torch-module takes {', '.join(takes[:-1])} and {takes[-1]})")
    if args.clock != "wall":
        raise UsageError("--clock cpu does not apply to --torch-module (it times wall time); leave it out")
    repeat = at_least("--repeat", args.repeat, 1, 5 if args.quick else 7)
    warmup = at_least("--warmup", args.warmup, 0, 1 if args.quick else 2)
    budget = at_least("--max-time", args.max_time, 0, 20.0, strict=True)
    sample_ms = at_least("--sample-time", args.sample_time, 0, 2.0, strict=True)
    check_outputs(args, plot=False)
    dtypes = parse_dtypes(args.dtype)
    threads = parse_threads(args.threads)
    backends = split(args.backend)
    if len(backends) > 1:
        raise UsageError(f"--backend: --torch-module runs one fusedloss backend, got {', '.join(backends)}")
    if backends:
        select_backends(backends)
    cases = quick_cases if args.quick else full_cases
    sizes = parse_sizes(args.size)
    if sizes:
        cases = tuple(("cross_entropy" if len(s) == 2 else "mse", s) for s in sizes)
    return TorchModulePlan(cases=cases, dtypes=dtypes, threads=threads, backend=backends[0] if backends else None,
                           repeat=repeat, warmup=warmup, budget_s=budget, sample_time_ms=sample_ms)
