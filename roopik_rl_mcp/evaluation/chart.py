"""The comparison as a picture: pass@1 per model with its bootstrap 95% interval, and the other pass@k.

Written by the runner next to the result (`chart.png`), so a person or an agent can see at a glance
whether the intervals overlap. matplotlib is imported only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from roopik_rl_mcp.evaluation.results import ModelResult


def comparison_png(models: Sequence[ModelResult], title: str) -> bytes:
    """Grouped bars: one group per model, one bar per pass@k; pass@1 carries its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    ks = list(models[0].pass_at_k)
    width = 0.8 / len(ks)
    figure, axis = pyplot.subplots(figsize=(max(4.0, 1.4 * len(models) + 2), 3.2))
    for j, k in enumerate(ks):
        xs = [i + (j - (len(ks) - 1) / 2) * width for i in range(len(models))]
        values = [m.pass_at_k[k] for m in models]
        errors = None
        if k == "pass@1":
            errors = [[v - m.pass_at_1_ci95[0] for v, m in zip(values, models)],
                      [m.pass_at_1_ci95[1] - v for v, m in zip(values, models)]]
        axis.bar(xs, values, width, yerr=errors, capsize=3, label=f"{k} (95% CI)" if errors else k)
        tops = [m.pass_at_1_ci95[1] if errors else v for v, m in zip(values, models)]
        for x, v, top in zip(xs, values, tops):
            axis.text(x, max(v, top) + 0.02, f"{v:.2f}", ha="center", fontsize=7)
    axis.set_xticks(range(len(models)), [f"{m.label}\n({m.prompt_format})" for m in models], fontsize=8)
    axis.set_ylim(0, 1.1)
    axis.set_ylabel("pass rate")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper right")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()
