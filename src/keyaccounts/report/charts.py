"""Report charts: matplotlib figures rendered to inline `data:image/png;base64,...` URIs, so
the HTML needs no external file, script or font. Figures come from `plots.new_figure` (the
object-oriented API): drawing them selects no backend and touches no pyplot state."""
from __future__ import annotations

import base64
import io as _io

import numpy as np
import pandas as pd

from ..plots import close, new_figure

DPI = 110
QUADRANT_COLOURS = {"key": "#1b7837", "develop": "#2166ac", "maintain": "#b2abd2", "harvest": "#bababa"}
BAND_COLOURS = {"low": "#1b7837", "medium": "#f1a340", "high": "#b2182b"}


def png_uri(data: bytes) -> str:
    """PNG bytes as a data URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig) -> str:
    """Render and release a matplotlib figure; return its PNG data URI."""
    buf = _io.BytesIO()
    try:
        # No timestamp/software metadata: the same data gives the same bytes.
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        close([fig])
    return png_uri(buf.getvalue())


def pareto_chart(curve: pd.DataFrame, top: float) -> str:
    """The 80/20 curve: cumulative value share against account share."""
    fig, ax = new_figure((5.5, 3.6))
    ax.plot(curve["account_share"] * 100, curve["value_share"] * 100, color="#2166ac", lw=2)
    ax.plot([0, 100], [0, 100], ls="--", color="grey", lw=1, label="equal share")
    if np.isfinite(top):
        ax.axvline(20, color="#b2182b", lw=1, ls=":")
        ax.annotate(f"top 20 % of accounts: {top:.0%} of value", xy=(20, top * 100), xytext=(28, top * 100 - 18),
                    arrowprops={"arrowstyle": "->", "color": "#b2182b"}, color="#b2182b")
    ax.set(xlabel="% of accounts (highest value first)", ylabel="% of expected value", xlim=(0, 100), ylim=(0, 101),
           title="Concentration of value (Pareto curve)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return figure_uri(fig)


def kaism_chart(accounts: pd.DataFrame, split: float) -> str:
    """KAISM matrix: attractiveness (y) against position (x), point size by expected value."""
    fig, ax = new_figure((5.5, 4.6))
    v = accounts["expected_value"].astype("float64").clip(lower=0).fillna(0)
    size = 8 + 140 * np.sqrt(v / v.max()) if v.max() > 0 else np.full(len(v), 10.0)
    for quad, colour in QUADRANT_COLOURS.items():
        m = (accounts["kaism_quadrant"] == quad).to_numpy()
        ax.scatter(accounts.loc[m, "position"], accounts.loc[m, "attractiveness"], s=size[m], c=colour, alpha=0.6,
                   edgecolors="white", linewidths=0.3, label=f"{quad} ({int(m.sum())})")
    ax.axhline(split, color="black", lw=0.8)
    ax.axvline(split, color="black", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="position (retention, tenure, credit health)",
           ylabel="attractiveness (value, growth, margin)", title="KAISM matrix (size = expected value)")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return figure_uri(fig)


def risk_value_chart(accounts: pd.DataFrame, *, medium: float, high: float) -> str:
    """Churn probability against expected value (log scale), coloured by risk band."""
    fig, ax = new_figure((5.5, 4.0))
    p = accounts["churn_probability"].astype("float64")
    v = accounts["expected_value"].astype("float64").clip(lower=1.0)
    band = np.where(p >= high, "high", np.where(p >= medium, "medium", "low"))
    for b, colour in BAND_COLOURS.items():
        m = band == b
        ax.scatter(v[m], p[m], s=10, c=colour, alpha=0.6, label=f"{b} risk ({int(m.sum())})")
    for y in (medium, high):
        ax.axhline(y, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set(xlabel="expected value over the horizon (log scale)", ylabel="churn probability", ylim=(0, 1),
           title="Churn risk x value")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return figure_uri(fig)


def funnel_chart(funnel: pd.DataFrame) -> str:
    """Horizontal funnel: open deals per stage (bar) with the stage-to-next conversion rate."""
    f = funnel.sort_values("order")
    fig, ax = new_figure((6.5, 0.55 * len(f) + 1.4))
    y = np.arange(len(f))[::-1]
    counts = f["count"].astype("float64").to_numpy()
    ax.barh(y, counts, color="#4393c3", height=0.6)
    for yi, c, a, r in zip(y, counts, f["amount"].astype("float64"), f["conversion_rate"].astype("float64"), strict=False):
        label = f"{c:,.0f} deals, {a:,.0f}" + (f"  -> {r:.0%} move on" if np.isfinite(r) else "")
        ax.text(c, yi, "  " + label, va="center", fontsize=8)
    ax.set_yticks(y, f["stage"].astype("str"))
    ax.set_xlim(0, max(counts.max(), 1) * 1.9)
    ax.set(xlabel="open deals at as_of", title="Sales funnel")
    fig.tight_layout()
    return figure_uri(fig)


def forecast_chart(periods: pd.DataFrame) -> str:
    """Expected revenue per period with the P10-P90 band, and the closed-won part."""
    d = periods.groupby("period", sort=False)[["expected", "p10", "p50", "p90", "closed_won"]].sum(min_count=1)
    fig, ax = new_figure((6.5, 3.6))
    x = np.arange(len(d))
    ax.fill_between(x, d["p10"], d["p90"], color="#92c5de", alpha=0.6, label="P10-P90")
    ax.plot(x, d["expected"], marker="o", color="#2166ac", label="expected")
    ax.plot(x, d["p50"], ls="--", color="#2166ac", lw=1, label="median (P50)")
    ax.bar(x, d["closed_won"].fillna(0), width=0.3, color="#1b7837", alpha=0.8, label="already closed won")
    ax.set_xticks(x, [str(p) for p in d.index])
    ax.set(ylabel="revenue", title="Forecast per period")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return figure_uri(fig)


def drift_chart(table: pd.DataFrame, threshold: float, top: int = 15) -> str:
    """PSI of the most shifted features, the warning threshold as a line."""
    d = table.dropna(subset=["psi"]).head(top)[::-1]
    fig, ax = new_figure((6.0, 0.28 * len(d) + 1.3))
    ax.barh(d["feature"].astype("str"), d["psi"], color=np.where(d["psi"] > threshold, "#b2182b", "#4393c3"))
    ax.axvline(threshold, color="black", ls="--", lw=1)
    ax.set(xlabel="PSI (training reference vs scoring population)", title="Feature drift")
    fig.tight_layout()
    return figure_uri(fig)
