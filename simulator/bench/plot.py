"""bench.png: accuracy against update bytes (log x), a line per method, a panel per scenario and model; the
target (the full fine-tune's accuracy minus the margin) is drawn and named, and each panel says how few
bytes reach it with rankcast's update against the best baseline and the full model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: rankcast's own methods stand out; the baselines are thin lines.
OURS_STYLE = {
    "factorised": {"linewidth": 2.5, "color": "black"},
    "factorised_uv": {"linewidth": 2.5, "color": "black", "linestyle": "--"},
    "cli_default": {"color": "red", "marker": "*", "markersize": 12, "linestyle": "none"},
}


def plot_bench(results: Sequence[Any], path: Path) -> None:
    """One panel per bench case (objects with dataset, name, model, role, points, target_accuracy); saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows = -(-len(results) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    for axis, result in zip(axes.flat, results, strict=False):
        methods = dict.fromkeys(p.method for p in result.points)
        for method in methods:
            points = sorted((p.bytes, p.accuracy) for p in result.points if p.method == method)
            style = {"marker": "o", "markersize": 3, **OURS_STYLE.get(method, {"linewidth": 1})}
            axis.plot(*zip(*points, strict=True), label=method, **style)
        axis.axhline(result.target_accuracy, linestyle="--", color="grey", linewidth=1,
                     label=f"target: full fine-tune {result.full_finetune_accuracy:.3f} minus the margin")
        axis.set_xscale("log")
        axis.set_title(f"{result.dataset} / {result.name} / {result.model} ({result.role})\n{_at_target(result)}",
                       fontsize=9)
        axis.set_xlabel("update bytes (msgpack + zstd)")
        axis.set_ylabel("test accuracy of the rebuilt model")
        axis.set_ylim(max(0.0, result.target_accuracy - 0.25), 1.0)
        axis.grid(True, which="both", alpha=0.3)
    for axis in list(axes.flat)[len(results) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="lower right")
    figure.suptitle("accuracy against update size: each method's smallest update that reaches the target line wins",
                    fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _at_target(result: Any) -> str:
    """The bytes each side needs to reach the target: rankcast's factorised update, the best baseline, the model."""
    at = result.min_bytes_at_target
    ours = at.get("factorised")
    baselines = [b for m, b in at.items() if b is not None and m not in OURS_STYLE and m != "full_model"]
    best = min(baselines) if baselines else None
    ratio = f" ({best / ours:.1f}x fewer)" if ours and best else ""
    first = f"factorised {ours:,} B{ratio}" if ours else "factorised: not reached"
    second = f"best baseline {best:,} B" if best else "no baseline reached it"
    return f"bytes to the target: {first}\n{second}; full model {result.full_model_bytes:,} B"
