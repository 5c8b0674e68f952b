"""The ``fusedloss bench --plot`` figure: throughput against size, one panel per loss family (and thread count).

Both axes are logarithmic (sizes span 1e3..1e7, throughputs two orders of magnitude). In a panel the colour
says the contestant, the marker the loss and the line style the dtype; a shared legend below the panels lists
contestants and dtypes, each panel's own legend its losses. The dotted grey line is the measured memory
bandwidth (the triad), when known. Families come from the registry (kind and target domain), so a new loss
lands in its panel without a list to update here.
"""

from __future__ import annotations

import math

from .._spec import REGISTRY

MARKERS = "osD^v<>pXh*"


def loss_family(loss: str) -> str:
    spec = REGISTRY.get(loss)
    if spec is None:
        return "other"
    if spec.kind == "multiclass":
        return "multiclass classification"
    if spec.target_domain in ("unit", "sign"):
        return "binary classification"
    if spec.target_domain == "nonnegative":
        return "count regression"
    return "regression"


def _order(names, peers):
    """Our backends in auto's order (host first), then the peers."""
    from ..backends import REGISTRY, host_order

    order = [*host_order(), *(b for b in REGISTRY if b not in host_order())] + [f"peer:{p}" for p in peers]
    return sorted(names, key=lambda b: order.index(b) if b in order else len(order))


def plot(rows: list[dict], path: str, peers=()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = [r for r in rows if r.get("gbps")]
    threads = sorted({r["threads"] for r in rows})
    families = list(dict.fromkeys(loss_family(r["loss"]) for r in rows))
    panels = [(f, t) for t in threads for f in families if any(loss_family(r["loss"]) == f and r["threads"] == t
                                                               for r in rows)]
    names = _order({r["backend"] for r in rows}, peers)
    colour = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(names)}
    styles = {"float32": "-", "float64": "--"}
    ncols = 1 if len(panels) == 1 else 2
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (family, t) in zip(axes.flat, panels):
        sub = [r for r in rows if loss_family(r["loss"]) == family and r["threads"] == t]
        losses = list(dict.fromkeys(r["loss"] for r in sub))
        marker = {loss: MARKERS[i % len(MARKERS)] for i, loss in enumerate(losses)}
        for loss, backend, dtype in dict.fromkeys((r["loss"], r["backend"], r["dtype"]) for r in sub):
            pts = sorted((r["n"], r["gbps"]) for r in sub
                         if (r["loss"], r["backend"], r["dtype"]) == (loss, backend, dtype))
            peer = backend.startswith("peer:")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour[backend], marker=marker[loss],
                    markersize=5, linestyle=styles.get(dtype, ":"), linewidth=1.0 if peer else 1.6,
                    alpha=0.55 if peer else 1.0)
        triad = next((r["triad_gbps"] for r in sub if r.get("triad_gbps")), None)
        if triad:
            ax.axhline(triad, color="grey", linewidth=0.9, linestyle=":")
            ax.annotate(f"memory bandwidth {triad:.0f} GB/s", (0.02, triad),
                        xycoords=("axes fraction", "data"), fontsize=7, color="grey", va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{family}, {t} thread{'s' if t != 1 else ''}", fontsize=10)
        ax.set_xlabel("elements (log scale)")
        ax.set_ylabel("GB/s, higher is better (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend([Line2D([], [], color="black", marker=marker[loss], linestyle="none") for loss in losses], losses,
                  title="loss", fontsize=7, title_fontsize=7, loc="best", frameon=True, framealpha=0.8)
    handles = [Line2D([], [], color=colour[b], linewidth=2, alpha=0.55 if b.startswith("peer:") else 1.0)
               for b in names]
    labels = [b.replace("peer:", "") + (" (peer)" if b.startswith("peer:") else "") for b in names]
    dtypes = sorted({r["dtype"] for r in rows})
    handles += [Line2D([], [], color="black", linestyle=styles.get(d, ":")) for d in dtypes]
    labels += dtypes
    ncol = min(len(labels), 6)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle("fusedloss value_and_grad throughput (bytes each input read once + gradient written once, "
                 "per second)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 * math.ceil(len(labels) / ncol) / nrows + 0.02, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
