"""Kaplan-Meier figure of high- versus low-risk test patients.

The threshold is the median predicted risk on the training split, applied to the test
split (so the split does not peek at test outcomes).  Time is normalised to [0, 1] by the
longest test follow-up, as in the paper's figures.  Curves stop where fewer than
``min_at_risk`` patients remain, because the tail of a Kaplan-Meier curve on a handful of
patients is noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sksurv.compare import compare_survival
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from ..errors import DataError
from .validation import check_time_event

TICKS = np.linspace(0.0, 1.0, 6)


def risk_groups(test_risk, train_risk) -> tuple[np.ndarray, float]:
    """High-risk mask (risk above the training median) and the threshold."""
    threshold = float(np.median(np.asarray(train_risk, dtype=float)))
    return np.asarray(test_risk, dtype=float) > threshold, threshold


def logrank_p(time, event, high) -> float:
    """Log-rank p-value between the two groups (scikit-survival ``compare_survival``)."""
    if high.all() or not high.any():
        return float("nan")
    return float(compare_survival(Surv.from_arrays(event, time), high.astype(int))[1])


def _at_risk(time, ticks):
    return np.array([(time >= t).sum() for t in ticks])


def km_figure(time, event, test_risk, train_risk, path: str | Path, title: str = "", min_at_risk: int = 5) -> dict:
    """Draw and save the figure; return its numbers.

    Args:
        time, event: test follow-up, shape (n,).
        test_risk: predicted risk of the test patients, shape (n,).
        train_risk: predicted risk of the training patients (for the median threshold).
        path: output image (.png, .pdf or .svg).
        title: figure title (e.g. model and modality).
        min_at_risk: stop each curve where fewer patients remain at risk.

    Returns:
        dict with threshold, n_high, n_low, logrank_p, time_scale (the normalising time).
    """
    return km_panels([(title, time, event, test_risk, train_risk)], path, min_at_risk)[0]


def km_panels(panels, path: str | Path, min_at_risk: int = 5) -> list[dict]:
    """Several Kaplan-Meier panels side by side in one figure (e.g. with / without pre-training).

    Args:
        panels: ``(title, time, event, test_risk, train_risk)`` per panel (see :func:`km_figure`).
        path: output image.
        min_at_risk: stop each curve where fewer patients remain at risk.

    Returns:
        The numbers of each panel, as :func:`km_figure` returns them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(panels), figsize=(6 * len(panels), 5), height_ratios=[4, 1], sharex=True, squeeze=False)
    stats = [_draw(axes[0, i], axes[1, i], *panel, min_at_risk=min_at_risk) for i, panel in enumerate(panels)]
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return stats


def _draw(ax, table, title, time, event, test_risk, train_risk, min_at_risk: int = 5) -> dict:
    """One panel: the two risk groups' curves on ``ax``, numbers at risk on ``table``."""
    time, event = check_time_event(time, event, what="test split")
    if len(time) < 2:
        raise DataError(f"test split: {len(time)} patients, too few for a Kaplan-Meier figure")
    high, threshold = risk_groups(test_risk, train_risk)
    p = logrank_p(time, event, high)
    scale = float(time.max())
    tn = time / scale
    groups = [("low risk", ~high, "tab:blue"), ("high risk", high, "tab:red")]
    for row, (label, mask, color) in enumerate(groups):
        if not mask.any():
            continue
        t_g, e_g = tn[mask], event[mask]
        if not e_g.any():  # no event: a flat line at 1 until the last follow-up
            ax.step([0, t_g.max()], [1, 1], where="post", color=color, label=f"{label} (n={mask.sum()})")
        else:
            x, s, (lo, hi) = kaplan_meier_estimator(e_g, t_g, conf_type="log-log")
            keep = _at_risk(t_g, x) >= min(min_at_risk, mask.sum())
            x, s, lo, hi = np.r_[0, x[keep]], np.r_[1, s[keep]], np.r_[1, lo[keep]], np.r_[1, hi[keep]]
            ax.step(x, s, where="post", color=color, label=f"{label} (n={mask.sum()})")
            ax.fill_between(x, lo, hi, step="post", color=color, alpha=0.2, linewidth=0)
        for tick, n in zip(TICKS, _at_risk(t_g, TICKS)):
            table.text(tick, row, str(n), ha="center", va="center", color=color, fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("survival probability")
    ax.set_title(title)
    ax.legend(loc="lower left", frameon=False)
    ptxt = "n/a" if np.isnan(p) else (f"= {p:.3g}" if p >= 1e-4 else "< 1e-4")
    ax.text(0.98, 0.95, f"log-rank p {ptxt}", transform=ax.transAxes, ha="right", va="top")
    table.set_ylim(-0.6, 1.6)
    table.set_xlim(-0.05, 1.05)
    table.set_yticks([0, 1], ["low", "high"])
    table.set_xticks(TICKS)
    table.set_xlabel(f"normalised time (1 = {scale:g})")
    table.set_title("number at risk", fontsize=9, loc="left")
    for side in ("top", "right", "left"):
        table.spines[side].set_visible(False)
    return {"threshold": threshold, "n_high": int(high.sum()), "n_low": int((~high).sum()), "logrank_p": p, "time_scale": scale}
