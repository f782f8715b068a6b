"""training.eval.suite_report: the targets read off a world's table, and the overview."""

from __future__ import annotations

from training.eval.suite_report import check_targets, format_suite, split_row


def _table(faa_u: float, faa_g: float, sl_u: float, oracle_g: float, probe_u: float) -> dict:
    return {
        "rows": [
            {"method": "FAA", "scoring": "fusion", "columns": {"verif. AUC": (faa_u, 0.01), "verif. AUC (G)": (faa_g, 0.0)}},
            {"method": "SL", "scoring": "cosine", "columns": {"verif. AUC": (sl_u, 0.02), "verif. AUC (G)": (0.55, 0.0)}},
        ],
        "ceilings": {"oracle": {"verif. AUC": 0.9, "verif. AUC (G)": oracle_g},
                     "probe_tokens": {"verif. AUC": probe_u, "verif. AUC (G)": 0.7}},
    }


TARGETS = {"row": "FAA/fusion", "beats": ["SL/cosine", "Wen/cosine"], "beat_columns": ["verif. AUC"],
           "g_floor": {"value": 0.60, "where_oracle_at_least": 0.75},
           "ceiling_share": {"value": 0.95, "ceiling": "probe_tokens"}}


def test_targets_met_missed_and_not_applicable():
    met = {c["target"]: c for c in check_targets(_table(0.80, 0.62, 0.70, 0.80, 0.82), TARGETS)}
    assert met["FAA/fusion > SL/cosine on verif. AUC"]["ok"] is True
    assert met["FAA/fusion > Wen/cosine on verif. AUC"]["ok"] is None  # no such row in this table
    assert met["FAA/fusion >= 0.60 on verif. AUC (G)"]["ok"] is True
    share = met["FAA/fusion >= 0.95 x probe_tokens on verif. AUC"]
    assert share["ok"] is True and share["detail"] == "0.800 / 0.820 = 0.976"

    missed = {c["target"]: c for c in check_targets(_table(0.70, 0.58, 0.71, 0.80, 0.80), TARGETS)}
    assert missed["FAA/fusion > SL/cosine on verif. AUC"] == {
        "target": "FAA/fusion > SL/cosine on verif. AUC", "ok": False, "detail": "0.700 vs 0.710"}
    assert missed["FAA/fusion >= 0.60 on verif. AUC (G)"]["ok"] is False
    assert missed["FAA/fusion >= 0.95 x probe_tokens on verif. AUC"]["ok"] is False  # 0.700 < 0.76

    # a world whose oracle on G is below 0.75: the G floor does not apply there
    easy = {c["target"]: c for c in check_targets(_table(0.80, 0.50, 0.70, 0.70, 0.82), TARGETS)}
    floor = easy["FAA/fusion >= 0.60 on verif. AUC (G)"]
    assert floor["ok"] is None and floor["detail"] == "does not apply: oracle 0.700 < 0.75"
    assert check_targets(_table(0.8, 0.6, 0.7, 0.8, 0.8), {}) == []


def test_overview_has_a_column_pair_per_world_and_the_ceilings():
    worlds = {"a": _table(0.80, 0.62, 0.70, 0.80, 0.82), "b": _table(0.70, 0.58, 0.71, 0.80, 0.80)}
    checks = {w: check_targets(t, TARGETS) for w, t in worlds.items()}
    text = format_suite(worlds, checks)
    lines = text.splitlines()
    assert lines[0] == "| method | scoring | U · a | G · a | U · b | G · b |"
    assert lines[2] == "| FAA | fusion | 0.800 ± 0.010 | 0.620 ± 0.000 | 0.700 ± 0.010 | 0.580 ± 0.000 |"
    assert "| oracle | true traits | 0.900 | 0.800 | 0.900 | 0.800 |" in lines
    assert "| b | FAA/fusion > SL/cosine on verif. AUC | **no** | 0.700 vs 0.710 |" in lines
    assert split_row("Wen 2021 (project variant)/cosine") == ("Wen 2021 (project variant)", "cosine")
    assert split_row("SL") == ("SL", "cosine")
