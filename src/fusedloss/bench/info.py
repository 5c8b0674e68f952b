"""``fusedloss info``: the backend table (available or why not, version, threads, build flags), the machine,
and the versions of the peers."""

from __future__ import annotations

import json
import os
import textwrap

from .. import _config
from .machine import machine_info
from .report import table


def _dist_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


INFO_WIDTH = 100  # `fusedloss info` fits a 100-column terminal


def _wrap(text, indent="    "):
    return "\n".join(textwrap.wrap(text, INFO_WIDTH, subsequent_indent=indent, break_on_hyphens=False))


def _backend_table(rows):
    """One short line per backend, then what each one is built with (or why it is unavailable), wrapped."""
    lines = [[r["name"], "yes" if r["available"] else "no", r["priority"], "device" if r["device"] else "host",
              r.get("version", "-"), r.get("threads", "-")] for r in rows]
    out = [table(["backend", "available", "priority", "arrays", "version", "threads"], lines), ""]
    for r in rows:
        extra = {k: v for k, v in r.items()
                 if k not in ("name", "available", "priority", "device", "version", "threads", "build", "reason")}
        if r["available"]:
            detail = r.get("build", "") + "".join(f"; {k}={v}" for k, v in extra.items())
            out.append(_wrap(f"{r['name']}: {detail.lstrip('; ') or '-'}"))
        else:
            out.append(_wrap(f"{r['name']}: unavailable: {r.get('reason', '?')}"))
    return "\n".join(out)


def info_command(args):
    import numpy as np

    from .. import __version__, _dispatch
    from .._spec import REGISTRY
    from ..backends import backends

    rows = backends()
    if args.json:
        machine = machine_info()
        print(json.dumps({"fusedloss": __version__, "threads": _config.get_num_threads(),
                          "backend": _config.get_backend(), "machine": machine, "backends": rows},
                         indent=1, default=str))
        return 0
    try:
        auto = _dispatch.resolve_host_backend(None, REGISTRY["mse"], np.dtype(np.float32)).NAME
    except Exception as exc:
        auto = f"none ({exc})"
    machine = machine_info()
    print(f"fusedloss {__version__}  python {machine['versions']['python']}  numpy {np.__version__}  "
          f"numba {_dist_version('numba') or 'not installed'}")
    print(_wrap(f"cpu: {machine['cpu']} ({machine['machine']}, {machine['cores']} cores usable, "
                f"SIMD: {' '.join(machine['simd']) or '-'}), memory {machine['memory_gib']} GiB"))
    env_threads = os.environ.get("FUSEDLOSS_NUM_THREADS")
    print(f"threads: {_config.get_num_threads()}"
          + (f" (FUSEDLOSS_NUM_THREADS={env_threads})" if env_threads else " (default: all usable cores)"))
    print(f"backend: {_config.get_backend()} (host arrays, mse float32 -> {auto})")
    print()
    print(_backend_table(rows))
    print()
    peers = {"torch": _dist_version("torch"), "jax": _dist_version("jax"),
             "scikit-learn": _dist_version("scikit-learn"), "matplotlib": _dist_version("matplotlib")}
    print(_wrap("bench peers: numpy " + np.__version__ + ", "
          + ", ".join(f"{k} {v}" if v else f"{k} (not installed)" for k, v in peers.items() if k != "matplotlib")))
    print(f"plots (--plot): matplotlib {peers['matplotlib'] or 'not installed'}")
    return 0
