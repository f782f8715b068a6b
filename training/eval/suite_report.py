"""The suite table: one experiment spec run on several worlds, summarised and checked against targets.

Each world has its own table (:func:`training.experiments.summarise`: rows of
method x scoring with mean and std over seeds, and ceiling rows -- the oracle
and the two trait probes). This module puts them side by side and checks the
spec's ``targets`` on every world, so that a claim such as "FAA fusion beats
every baseline" is read off the numbers, world by world, never off one world.

``targets`` in a spec (all keys optional)::

    targets:
      row: FAA/fusion                      # the row the targets are about (method/scoring)
      beats: [SL/cosine, FAA/cosine]       # rows it must beat (means) ...
      beat_columns: [verif. AUC, 1:2 match]  # ... on these columns
      g_floor: {value: 0.60, column: verif. AUC (G), where_oracle_at_least: 0.75}
      ceiling_share: {value: 0.95, column: verif. AUC, ceiling: probe_tokens}
"""

from __future__ import annotations

from typing import Any

TARGET_KEYS = ("row", "beats", "beat_columns", "g_floor", "ceiling_share")
G_FLOOR_KEYS = ("value", "column", "where_oracle_at_least")
CEILING_SHARE_KEYS = ("value", "column", "ceiling")
CEILINGS = ("oracle", "probe_global", "probe_tokens")
# the overview's columns: all pairs (U) and same-gender negatives (G)
OVERVIEW = (("U", "verif. AUC"), ("G", "verif. AUC (G)"))

__all__ = ["CEILINGS", "CEILING_SHARE_KEYS", "G_FLOOR_KEYS", "TARGET_KEYS", "check_targets", "format_suite",
           "split_row"]


def split_row(label: str) -> tuple[str, str]:
    """``"FAA/fusion"`` -> ``("FAA", "fusion")``; a label without a scoring means cosine."""
    method, _, scoring = str(label).rpartition("/")
    return (method, scoring) if method else (scoring, "cosine")


def _mean(table: dict[str, Any], label: str, column: str) -> float | None:
    method, scoring = split_row(label)
    for row in table["rows"]:
        if row["method"] == method and row["scoring"] == scoring:
            cell = row["columns"].get(column)
            return None if cell is None else float(cell[0])
    return None


def _ceiling(table: dict[str, Any], kind: str, column: str) -> float | None:
    value = (table.get("ceilings") or {}).get(kind, {}).get(column)
    return None if value is None else float(value)


def check_targets(table: dict[str, Any], targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of ``targets`` on one world's table: ``{"target", "ok", "detail"}`` each.

    ``ok`` is None where the target does not apply (a missing row, a world
    whose oracle on G is below the floor's condition, no ceiling).
    """
    out: list[dict[str, Any]] = []
    me = targets.get("row")
    if not me:
        return out
    for column in targets.get("beat_columns", ["verif. AUC"]):
        mine = _mean(table, me, column)
        for other in targets.get("beats", []):
            theirs = _mean(table, other, column)
            ok = None if mine is None or theirs is None else mine > theirs
            detail = "row missing" if ok is None else f"{mine:.3f} vs {theirs:.3f}"
            out.append({"target": f"{me} > {other} on {column}", "ok": ok, "detail": detail})
    floor = targets.get("g_floor")
    if floor:
        column = floor.get("column", "verif. AUC (G)")
        mine, oracle = _mean(table, me, column), _ceiling(table, "oracle", column)
        need = float(floor.get("where_oracle_at_least", 0.0))
        if mine is None or oracle is None:
            ok, detail = None, "row or oracle missing"
        elif oracle < need:
            ok, detail = None, f"does not apply: oracle {oracle:.3f} < {need:.2f}"
        else:
            ok, detail = mine >= float(floor["value"]), f"{mine:.3f} (oracle {oracle:.3f})"
        out.append({"target": f"{me} >= {float(floor['value']):.2f} on {column}", "ok": ok, "detail": detail})
    share = targets.get("ceiling_share")
    if share:
        column, kind = share.get("column", "verif. AUC"), share.get("ceiling", "probe_tokens")
        mine, ceiling = _mean(table, me, column), _ceiling(table, kind, column)
        if mine is None or ceiling is None:
            ok, detail = None, "row or ceiling missing"
        else:
            ok, detail = mine >= float(share["value"]) * ceiling, f"{mine:.3f} / {ceiling:.3f} = {mine / ceiling:.3f}"
        out.append({"target": f"{me} >= {float(share['value']):.2f} x {kind} on {column}", "ok": ok, "detail": detail})
    return out


def _cell(cell: Any) -> str:
    return "" if cell is None else f"{cell[0]:.3f} ± {cell[1]:.3f}"


def format_suite(worlds: dict[str, dict[str, Any]], checks: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: one overview row per (method, scoring) with U and G per world, the ceilings, the targets."""
    names = list(worlds)
    first = worlds[names[0]]
    head = ["method", "scoring"] + [f"{short} · {w}" for w in names for short, _ in OVERVIEW]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in first["rows"]:
        label = (row["method"], row["scoring"])
        cells = []
        for w in names:
            other = next((r for r in worlds[w]["rows"] if (r["method"], r["scoring"]) == label), None)
            for _, column in OVERVIEW:
                cells.append(_cell(None if other is None else other["columns"].get(column)))
        lines.append("| " + " | ".join([*label, *cells]) + " |")
    for kind in CEILINGS:
        cells = []
        for w in names:
            for _, column in OVERVIEW:
                value = _ceiling(worlds[w], kind, column)
                cells.append("" if value is None else f"{value:.3f}")
        if any(cells):
            lines.append("| " + " | ".join([kind, "true traits" if kind == "oracle" else "ridge read-out", *cells]) + " |")
    if any(checks.values()):
        lines += ["", "| world | target | met | numbers |", "|---|---|---|---|"]
        for w in names:
            for c in checks.get(w, []):
                met = {True: "yes", False: "**no**", None: "n/a"}[c["ok"]]
                lines.append(f"| {w} | {c['target']} | {met} | {c['detail']} |")
    return "\n".join(lines)
