"""Figures with matplotlib (Agg, headless); no torch import."""

from __future__ import annotations

from pathlib import Path

from lrdecay_cli.rundir import write_atomic


def lr_curve_png(lrs: list[float], path: Path, title: str, epoch_steps: int | None = None) -> None:
    """LR against step, with epoch boundaries marked; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot(range(len(lrs)), lrs, linewidth=1.5)
    if epoch_steps:
        for boundary in range(epoch_steps, len(lrs), epoch_steps):
            ax.axvline(boundary, color="0.85", linewidth=0.8, zorder=0)
    ax.set(title=title, xlabel="optimizer step", ylabel="learning rate")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    suffix = path.suffix.lstrip(".") or "png"
    write_atomic(path, lambda f: fig.savefig(f, format=suffix))
    plt.close(fig)
