"""Training curves as a PNG, drawn from a job's progress file (loss, DPO reward margins and accuracies, ...).

An agent can look at the curve instead of reading numbers: `job_plot` returns it as MCP image content.
matplotlib is imported only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
from pathlib import Path

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.jobs import read_progress

PREFERRED = ("loss", "rewards/margins", "rewards/accuracies", "reward", "completions/mean_length",
             "completion_length", "eval_loss", "grad_norm", "learning_rate")
MAX_PANELS = 4


def curves(progress_path: Path) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)], from the progress file's log events."""
    series: dict[str, list[tuple[int, float]]] = {}
    for event in read_progress(progress_path):
        if event.get("event") != "log" or event.get("step") is None:
            continue
        for name, value in (event.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                series.setdefault(name, []).append((int(event["step"]), float(value)))
    return series


def plot_png(job: dict) -> tuple[bytes, list[str]]:
    """The PNG and the metrics drawn; a UserError when the job has logged nothing to draw yet."""
    series = curves(Path(job["config"]["progress_path"]))
    chosen = [name for name in PREFERRED if len(series.get(name, [])) >= 1]
    chosen += [name for name in sorted(series) if name not in chosen and len(series[name]) > 1]
    chosen = chosen[:MAX_PANELS]
    if not chosen:
        raise UserError("job_id", f"job {job['id']!r} has logged no metrics yet ({job['status']}); try again later")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(chosen), 1, figsize=(7, 2.2 * len(chosen)), sharex=True, squeeze=False)
    for axis, name in zip(axes[:, 0], chosen):
        steps, values = zip(*series[name])
        axis.plot(steps, values, marker="o" if len(steps) < 30 else None, linewidth=1.5)
        axis.set_ylabel(name, fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.suptitle(f"{job['kind']} job {job['id']} ({job['status']})", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue(), chosen
