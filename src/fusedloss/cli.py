"""The ``fusedloss`` command (also ``python -m fusedloss``).

``fusedloss info``   the backend table (available or why not, version, threads, build flags) and versions.
``fusedloss bench``  time value_and_grad on every available backend against the peers; see ``--help``.

Exit status of ``bench``: 0 on success; 1 when one of our backends failed its correctness check or, with
``--compare``, a case got slower than ``--max-slowdown`` allows; 2 for a usage error (including a
``--compare`` that found no case in common with the baseline).

This module only defines and parses the arguments; each command is one call into ``fusedloss.bench``.
"""

from __future__ import annotations

import argparse
import sys

from .backends import host_order
from .bench.cases import DTYPES, quick_cases_text
from .bench.command import bench_command
from .bench.info import info_command
from .bench.peers import PEERS
from .bench.plan import UsageError


def build_parser():
    from . import __version__

    p = argparse.ArgumentParser(prog="fusedloss", description="fused loss + gradient kernels: info and benchmarks")
    p.add_argument("--version", action="version", version=f"fusedloss {__version__}")
    sub = p.add_subparsers(dest="command")

    info = sub.add_parser("info", help="backends (available or why not, version, threads, build flags), versions")
    info.add_argument("--json", action="store_true", help="print the same as JSON")
    info.set_defaults(func=info_command)

    b = sub.add_parser(
        "bench", help="time value_and_grad on every available backend against NumPy, PyTorch, JAX, scikit-learn",
        description="Time loss.value_and_grad(pred, target, grad_out=g) (g reused) on each backend and each "
                    "installed peer, after warm-up and a correctness check against the float64 reference. "
                    "Lists take repeated options or commas: --loss mse,huber --loss log_cosh. Every option is "
                    "checked before anything runs; a bad one exits with status 2 and says what is expected.",
        epilog="Sizes follow the kind of loss: elementwise losses take N (1e6), multiclass losses ROWSxCLASSES "
               "(4096x1000). Each --size must fit a loss of the run. With --loss, each named loss needs a size of "
               "its form (--loss cross_entropy --size 1e6 is an error); without --loss, only the losses of the "
               "forms given run (--size 1e6: the elementwise losses). Exit status: 0 success; 1 a failed "
               "correctness check or, with --compare, a regression; 2 a usage error.")
    b.add_argument("--quick", action="store_true",
                   help=f"a short run: {quick_cases_text()}, float32, every available backend and installed peer, "
                        "5 repeats")
    b.add_argument("--loss", action="append", help="losses (default: every registered loss with a gradient)")
    b.add_argument("--backend", action="append",
                   help=f"our backends: {', '.join(host_order())} (default: all available)")
    b.add_argument("--peer", action="append", help=f"peers: {', '.join(PEERS)} (default: all installed)")
    b.add_argument("--no-peers", action="store_true", help="time our backends only")
    b.add_argument("--torch-module", action="store_true",
                   help="PyTorch module mode: forward + backward of torch.nn.CrossEntropyLoss / MSELoss against "
                        "fusedloss.torch's on the same tensors (cross_entropy 8192x32000 and 65536x1000, mse 1e7; "
                        "--quick: 1024x1000 and 1e5)")
    b.add_argument("--dtype", action="append", help=f"{' and/or '.join(DTYPES)} (default float32)")
    b.add_argument("--size", action="append",
                   help="N for elementwise losses (1e3, 1e7, ...), ROWSxCLASSES for multiclass ones (see below; "
                        "default: 1e3, 1e5, 1e7; cross_entropy 65536x1000, 8192x32000); with --torch-module: "
                        "ROWSxCLASSES times CrossEntropyLoss, N times MSELoss")
    b.add_argument("--threads", action="append",
                   help="thread counts, whole numbers >= 1 (default: fusedloss's, i.e. FUSEDLOSS_NUM_THREADS or all "
                        "cores)")
    b.add_argument("--repeat", type=int, help="timed samples per contestant, >= 1 (default 7, --quick 5)")
    b.add_argument("--warmup", type=int, help="untimed calls before timing, >= 0 (default 2, --quick 1)")
    b.add_argument("--max-time", type=float,
                   help="seconds of samples per contestant and case after which it stops at 3 samples "
                        "(default 2, --quick 0.5)")
    b.add_argument("--sample-time", type=float, metavar="MS",
                   help="a sample repeats a call until it lasts about this long (default 2 ms)")
    b.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time (default), or this process's CPU time: steadier on a shared machine, for "
                        "single-threaded runs (--threads 1) such as the regression guard")
    b.add_argument("--triad", type=float, metavar="GBPS",
                   help="this machine's memory bandwidth in GB/s instead of measuring a triad")
    b.add_argument("--refresh-triad", action="store_true", help="measure the triad again (ignore the cache)")
    b.add_argument("--busy", type=int, metavar="N",
                   help="run N busy-looping processes beside the timings (a competing load, as on a shared "
                        "machine; e.g. one per core)")
    b.add_argument("--json", metavar="FILE", help="write rows + machine info (the --compare baseline format)")
    b.add_argument("--csv", metavar="FILE", help="write the rows as CSV (also with --torch-module)")
    b.add_argument("--plot", metavar="FILE.png",
                   help="plot GB/s against size, one panel per loss family, log axes (needs matplotlib; not with "
                        "--torch-module)")
    b.add_argument("--compare", metavar="BASELINE.json[,MORE.json]",
                   help="regression guard: fail when (backend / NumPy peer) grew by more than --max-slowdown "
                        "relative to the baseline's ratio (several files: per case, the highest ratio among "
                        "the files of this machine's kind, else among all)")
    b.add_argument("--max-slowdown", type=float, help="with --compare: allowed ratio growth, > 1 (default 1.25)")
    b.add_argument("--note", help="free text stored in the JSON's machine info")
    b.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    b.set_defaults(func=bench_command)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error (status 2, message printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"fusedloss {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
