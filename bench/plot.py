"""Write latency over time, from the bench's own samples (used by bench/run.py).

``timeline()`` turns one measurement's raw samples (start time, latency) into small per-bin series
right after the measurement, so that the harness never keeps millions of samples; ``draw()`` makes
one PNG per scenario from those series: one panel per contender, the time axis in seconds since the
load started, latency in ms on a log scale, the operation's span shaded.

numpy and matplotlib are pinned in requirements-dev.txt; without them the harness still runs and
says that it drew no pictures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

BIN_S = 0.1  # seconds per point of the series


def available() -> str | None:
    """None when the pictures can be drawn, else why not."""
    try:
        import matplotlib  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (make venv installs it from requirements-dev.txt)"
    return None


def series(samples: list[tuple[float, float]], origin: float, end: float, bin_s: float = BIN_S) -> dict[str, list]:
    """Per bin of bin_s seconds from origin to end: the longest latency of any operation in flight
    during the bin (ms; a write blocked for 2 s shows as 2000 ms across those 2 s, the same rule as the
    bench's windows), the median latency of the operations that started in it (ms), and the
    operations completed per second."""
    import numpy as np

    n = max(1, math.ceil((end - origin) / bin_s))
    if not samples:
        return {"bin_s": bin_s, "max_ms": [None] * n, "p50_ms": [None] * n, "ops_per_s": [0.0] * n}
    arr = np.asarray(samples, dtype=float)
    start, lat = arr[:, 0] - origin, arr[:, 1]
    first = np.clip(np.floor(start / bin_s).astype(int), 0, n - 1)
    last = np.clip(np.floor((start + lat) / bin_s).astype(int), 0, n - 1)
    longest = np.full(n, -1.0)
    np.maximum.at(longest, first, lat)
    for i in np.nonzero(last > first)[0]:  # the few operations that cross a bin boundary
        seg = longest[first[i]:last[i] + 1]
        np.maximum(seg, lat[i], out=seg)
    done = np.bincount(last, minlength=n)[:n] / bin_s
    order = np.argsort(first, kind="stable")
    bounds = np.searchsorted(first[order], np.arange(n + 1))
    median = [float(np.median(lat[order[bounds[i]:bounds[i + 1]]])) if bounds[i + 1] > bounds[i] else None
              for i in range(n)]
    return {
        "bin_s": bin_s,
        "max_ms": [round(v * 1000, 3) if v >= 0 else None for v in longest.tolist()],
        "p50_ms": [None if v is None else round(v * 1000, 3) for v in median],
        "ops_per_s": [round(v, 1) for v in done.tolist()],
    }


def timeline(*, title: str, origin: float, end: float, writes: list[tuple[float, float]],
             reads: list[tuple[float, float]] | None = None,
             spans: list[tuple[str, float, float]] = ()) -> dict[str, Any]:
    """One panel's data: the series, plus spans (kind, start, end) in seconds since origin. Kinds:
    ``operation`` (psql statement or whole ansible-playbook run), ``module`` (the module's own run, from
    its duration_s: the result carries no start time, so it is placed to end when ansible-playbook
    returned, a little later than the module really ran), ``transaction`` (a long transaction open)."""
    return {
        "title": title,
        "seconds": round(end - origin, 3),
        "writes": series(writes, origin, end),
        "reads": series(reads, origin, end) if reads else None,
        "spans": [(kind, round(a - origin, 3), round(b - origin, 3)) for kind, a, b in spans],
    }


SPAN_STYLE = {
    "operation": {"color": "tab:orange", "alpha": 0.18, "label": "operation (psql statement / ansible-playbook run)"},
    "module": {"color": "tab:orange", "alpha": 0.35,
               "label": "pg_index's duration_s (drawn ending when ansible-playbook returned)"},
    "transaction": {"facecolor": "none", "edgecolor": "tab:purple", "hatch": "//", "alpha": 0.5,
                    "label": "long read transaction open"},
}


def draw(path: Path, heading: str, panels: list[dict[str, Any]], limit_ms: float | None = None) -> Path:
    """One PNG: a panel per timeline, one shared latency axis (ms, log) and a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    height = 2.3 * len(panels) + 1.2
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, height), sharey=True, squeeze=False)
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for kind, a, b in panel["spans"]:
            style = dict(SPAN_STYLE.get(kind, {"color": "grey", "alpha": 0.15, "label": kind}))
            label = style.pop("label")
            handles.setdefault(label, ax.axvspan(a, b, **style, label=label))
        for key, colour, who in (("writes", "tab:red", "writes"), ("reads", "tab:blue", "reads")):
            s = panel.get(key)
            if not s:
                continue
            t = np.arange(len(s["max_ms"])) * s["bin_s"]
            longest = np.array([np.nan if v is None else v for v in s["max_ms"]], dtype=float)
            median = np.array([np.nan if v is None else v for v in s["p50_ms"]], dtype=float)
            line, = ax.step(t, longest, where="post", color=colour, linewidth=1.2,
                            label=f"longest {who[:-1]} in flight (per {s['bin_s']:g} s)")
            handles.setdefault(line.get_label(), line)
            line, = ax.step(t, median, where="post", color=colour, linewidth=0.8, alpha=0.45, linestyle="--",
                            label=f"median {who[:-1]} latency")
            handles.setdefault(line.get_label(), line)
        if limit_ms:
            line = ax.axhline(limit_ms, color="black", linewidth=0.8, linestyle=":",
                              label=f"stall limit, lock_timeout + 250 ms ({limit_ms:g} ms)")
            handles.setdefault(line.get_label(), line)
        ax.set_yscale("log")
        ax.set_xlim(0, panel["seconds"])
        ax.set_title(panel["title"], fontsize=9, loc="left")
        ax.set_ylabel("latency (ms)")
        ax.grid(True, which="major", alpha=0.3)
    axes[-1, 0].set_xlabel("time since the load started (s)")
    fig.suptitle(heading, fontsize=11, x=0.01, ha="left")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=8, frameon=False)
    legend_in = 0.25 * math.ceil(len(handles) / 3) + 0.15  # inches under the panels for the legend's rows
    fig.tight_layout(rect=(0, legend_in / height, 1, 1 - 0.35 / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
