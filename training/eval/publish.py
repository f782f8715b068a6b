"""``python -m training.publish --run RUN --report EVAL/report.json --out DIR``: a checkpoint ready to share.

Re-saves a run's best model with its evaluation (every list's value, the
scoring, and on synthetic data the oracle's values) in the model card, plus
optional notes (a markdown file). The folder is what the app loads and what
gets pushed to the Hugging Face Hub.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from faa_core.checkpoint import load_checkpoint, save_checkpoint


def evaluation_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report's per-list values (and the oracle's), without the bulky details."""
    out: dict[str, Any] = {
        "protocol": report["protocol"], "scoring": report["scoring"], "rerank_k": report.get("rerank_k", 0),
        "lists": {name: {"metric": e["metric"], "value": round(float(e["value"]), 4),
                         **({"trials": e["trials"]} if "trials" in e else {"voices": e["voices"], "faces": e["faces"]})}
                  for name, e in report["lists"].items()},
    }
    if "oracle" in report:
        out["oracle"] = {name: round(float(e["value"]), 4) for name, e in report["oracle"]["lists"].items()}
    return out


def publish(run: str | Path, report_path: str | Path, out: str | Path, notes: Optional[str] = None) -> Path:
    run = Path(run)
    model, card = load_checkpoint(run / "best")
    report = json.loads(Path(report_path).read_text())
    evaluation = {**card.get("evaluation", {}), "test": evaluation_summary(report)}
    extra = {"notes": notes} if notes else None
    return save_checkpoint(out, model, trained_on=card.get("trained_on"), evaluation=evaluation,
                           encoders=card.get("encoders"), extra=extra)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a training run folder (uses RUN/best)")
    p.add_argument("--report", required=True, help="report.json written by python -m training.evaluate")
    p.add_argument("--out", required=True)
    p.add_argument("--notes", default=None, help="a markdown file appended to the model card")
    args = p.parse_args(argv)
    notes = Path(args.notes).read_text() if args.notes else None
    folder = publish(args.run, args.report, args.out, notes)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
