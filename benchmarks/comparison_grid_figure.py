"""The regime-grid figure of docs/comparison.md: per simulated regime, what the noise ceiling
says against what the truth says, per variant.

Reads the table ``benchmarks/comparison_regimes.py --table`` writes (one row per regime, seed,
number of runs and variant) and draws one panel per regime: x = the variant's NC gain over
raw-single (%, the LAION criterion), y = its truth gain (the correlation of its all-repeat
image means with the true image means, minus raw-single's), one point per case; the
recommended variant of each case is ringed. Points right of 0 and below 0 are the
NC-up-betas-worse cases.

    .venv/bin/python benchmarks/comparison_grid_figure.py /tmp/cr.tsv docs/comparison_regimes.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from echoprep.variants import ALL_VARIANTS  # noqa: E402

COLOURS = dict(zip(ALL_VARIANTS, plt.get_cmap("tab10").colors, strict=False))


def truth_gains(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``truth_gain``: r_truth minus raw-single's of the same case."""
    case = ["regime", "seed", "runs"]
    base = table[table["variant"] == "raw-single"].set_index(case)["r_truth"]
    key = pd.MultiIndex.from_frame(table[case])
    return table.assign(truth_gain=table["r_truth"].to_numpy() - base.reindex(key).to_numpy())


def draw(table: pd.DataFrame, out: Path) -> Path:
    """One panel per regime; returns ``out``."""
    table = truth_gains(table)
    regimes = list(dict.fromkeys(table["regime"]))
    cols = min(4, len(regimes))
    rows = -(-len(regimes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax, regime in zip(axes.flat, regimes, strict=False):
        sub = table[table["regime"] == regime]
        ax.axhline(0, color="0.7", lw=0.8)
        ax.axvline(0, color="0.7", lw=0.8)
        for v in ALL_VARIANTS:
            pts = sub[sub["variant"] == v]
            if pts.empty:
                continue
            ax.scatter(pts["gain"], pts["truth_gain"], s=18, color=COLOURS[v], label=v)
            rec = pts[pts["recommended"].astype(bool)]
            ax.scatter(
                rec["gain"], rec["truth_gain"], s=70, facecolors="none", edgecolors="k", lw=1
            )
        ax.set_title(regime, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(regimes) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("truth gain (Δr over raw-single)", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("NC gain over raw-single (%)", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="comparison_regimes.py --table output")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args(argv)
    print(draw(pd.read_csv(args.table, sep="\t"), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
