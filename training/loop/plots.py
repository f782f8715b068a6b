"""Training curves from a run's metrics log: losses, validation AUC, clusters, purity."""

from __future__ import annotations

import json
from pathlib import Path


def plot_training(log_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write one PNG per quantity that the log holds; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in Path(log_path).read_text().splitlines() if l.strip()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    panels = {
        "losses": [k for k in ("loss", "fvc", "fvm", "wen") if any(k in r for r in rows)],
        "validation_auc": sorted({k for r in rows for k in r if k.startswith("val_auc_")}),
        "clusters": ["clusters"],
        "cluster_quality": [k for k in ("purity", "nmi") if any(k in r for r in rows)],
    }
    written = []
    for name, keys in panels.items():
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for k in keys:
            pts = [(r["round"], r[k]) for r in rows if k in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_xlabel("round")
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
