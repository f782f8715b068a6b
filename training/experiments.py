"""``python -m training.experiments --spec small --out DIR``: the experiment table in one command.

Builds the spec's synthetic world (once), trains every method with every
seed, evaluates each on the world's own test lists with the scorings the spec
names, measures where the match head's attention goes, and prints mean ± std
per task next to the oracle. Everything lands under ``DIR`` and a second run
reuses what is finished (training resumes, finished evaluations are read back),
so the command can be interrupted and started again. Finished work is keyed by
the resolved training config and the data folder: a changed override, config
file or default trains anew (in its own run folder), never reuses an old
result.

``--data DIR`` runs the spec on any feature store or world instead of
building the spec's world; the ceiling rows (oracle and trait probes) and the
attention measurement appear only where the folder has the ground truth of a
synthetic world.

The spec (``training/configs/experiments/<name>.yaml``) is data: the world
(``world:``) or a suite of worlds (``worlds:``, e.g. ``--spec suite``: every
method on every world, a table per world, an overview and the spec's
``targets`` checked world by world, see :mod:`training.eval.suite_report`),
the seeds, a size config merged after each method's config, and the methods
(config, overrides, scorings).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from faa_core.fileio import atomic_write_text
from training.cli import DEBUG_FLAG, DEBUG_HELP, UserError, one_line_errors
from training.config import CONFIG_DIR, load_config
from training.eval.suite_report import (CEILING_SHARE_KEYS, CEILINGS, G_FLOOR_KEYS, TARGET_KEYS, check_targets,
                                        format_suite)

# Columns of the table: (title, lists averaged into it). Lists missing from a report are skipped.
COLUMNS = (
    ("verif. AUC", ("verify_v2f_test", "verify_f2v_test")),
    ("verif. AUC (G)", ("verify_g_v2f_test", "verify_g_f2v_test")),
    ("1:2 match", ("match_v2f_2_test", "match_f2v_2_test")),
    ("1:2 match (G)", ("match_g_v2f_2_test", "match_g_f2v_2_test")),
    ("retrieval mAP", ("reterival_v2f_test", "reterival_f2v_test")),
)
ATTENTION_LIST = "verify_v2f_test"


SPEC_KEYS = ("world", "worlds", "seeds", "scale", "methods", "targets")
WORLDS_KEYS = ("names", "seed")
METHOD_KEYS = ("name", "config", "overrides", "scoring")


def _check_spec_keys(where: str, data: Any, valid: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of {', '.join(valid)}, got {data!r}")
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"
            raise UserError(f"{where}: unknown key '{key}' ({hint})")


def read_spec(name_or_path: str) -> dict[str, Any]:
    """An experiment spec (a name in training/configs/experiments/ or a path), its keys checked."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / "experiments" / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (CONFIG_DIR / "experiments").glob("*.yaml"))
        raise FileNotFoundError(f"experiment spec not found: {name_or_path} (a YAML path, or one of {', '.join(names)})")
    spec = yaml.safe_load(path.read_text())
    _check_spec_keys(str(path), spec, SPEC_KEYS)
    for key in ("seeds", "methods"):
        if key not in spec:
            raise ValueError(f"{path}: the spec needs '{key}'")
    if ("world" in spec) == ("worlds" in spec):
        raise UserError(f"{path}: the spec needs one of 'world' (one preset) or 'worlds' (a suite), not both or neither")
    if "worlds" in spec:
        _check_spec_keys(f"{path}: worlds", spec["worlds"], WORLDS_KEYS)
        names = spec["worlds"].get("names")
        if not (names == "suite" or (isinstance(names, list) and names and all(isinstance(n, str) for n in names))):
            raise UserError(f"{path}: worlds.names must be 'suite' (the suite of presets.yaml) or a list of world names")
    if "targets" in spec:
        _check_spec_keys(f"{path}: targets", spec["targets"], TARGET_KEYS)
        for key, valid in (("g_floor", G_FLOOR_KEYS), ("ceiling_share", CEILING_SHARE_KEYS)):
            if key in spec["targets"]:
                _check_spec_keys(f"{path}: targets.{key}", spec["targets"][key], valid)
                if "value" not in spec["targets"][key]:
                    raise UserError(f"{path}: targets.{key} needs a 'value'")
    if not isinstance(spec["methods"], list) or not spec["methods"]:
        raise UserError(f"{path}: 'methods' must be a non-empty list")
    for i, m in enumerate(spec["methods"]):
        _check_spec_keys(f"{path}: methods[{i}]", m, METHOD_KEYS)
        if "name" not in m or "config" not in m:
            raise UserError(f"{path}: methods[{i}] needs a 'name' and a 'config'")
    names = [m["name"] for m in spec["methods"]]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: method names must be unique")
    return spec


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def method_config(spec: dict[str, Any], method: dict[str, Any], seed: int) -> dict[str, Any]:
    """The resolved training config of one (method, seed): its config, the spec's scale, its overrides, the seed."""
    configs = [method["config"]] + ([spec["scale"]] if spec.get("scale") else [])
    try:
        return load_config(configs, list(method.get("overrides", [])) + [f"seed={seed}"])
    except ValueError as exc:
        raise UserError(f"method {method['name']!r}: {exc}") from None


def run_key(cfg: dict[str, Any], data: str | Path) -> str:
    """What a finished run is keyed by: the resolved config and the data folder (12 hex digits of their hash)."""
    text = json.dumps({"config": cfg, "data": str(Path(data).resolve())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def has_truth(data: str | Path) -> bool:
    """Whether ``data`` is a synthetic world with its ground truth (so the oracle and attention can be measured)."""
    return (Path(data) / "world.json").is_file() and (Path(data) / "truth").is_dir()


def _job(args: tuple) -> dict[str, Any]:
    """Train one (method, seed), evaluate it, measure attention; runs in a worker process."""
    spec, method, seed, world, run, threads, key = args
    import torch

    torch.set_num_threads(threads)
    from faa_core.checkpoint import load_checkpoint

    from training.eval.attention import attention_mass
    from training.loop.data import open_features
    from training.eval.evaluate import evaluate, find_protocol
    from training.loop.trainer import Trainer

    run = Path(run)
    result_path = run / "result.json"
    scorings = method.get("scoring", ["cosine"])
    if result_path.is_file():
        done = json.loads(result_path.read_text())
        if done.get("key") == key and all(s in done for s in scorings):
            return done
    t0 = time.perf_counter()
    cfg = method_config(spec, method, seed)
    summary = Trainer(cfg, world, run, progress=False).train()
    train_s = time.perf_counter() - t0
    result: dict[str, Any] = {"method": method["name"], "seed": seed, "key": key, "config": cfg,
                              "summary": summary, "train_s": round(train_s, 1)}
    for scoring in scorings:
        report = evaluate(str(run / "best"), world, run / f"eval_{scoring}", scoring=scoring, with_oracle=False)
        result[scoring] = {name: e["value"] for name, e in report["lists"].items()}
    model, _ = load_checkpoint(run / "best")
    uses_fusion = "fusion" in scorings and (model.config.face_token_dim or model.config.voice_token_dim)
    if uses_fusion and has_truth(world):  # attention is measured against the world's informative regions
        src = open_features(world)
        proto = find_protocol(Path(world), None, None)
        vl = proto.verification[ATTENTION_LIST]
        v, f = src["voice"].index([str(i) for i in vl.voices]), src["face"].index([str(i) for i in vl.faces])
        result["attention"] = attention_mass(model, world, src["voice"], src["face"], v, f)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(result_path, json.dumps(result, indent=2))
    return result


def ensure_world(spec: dict[str, Any], out: Path) -> Path:
    w = spec["world"]
    return build_world_once(w["preset"], int(w.get("seed", 0)), out / f"world_{w['preset']}_{w.get('seed', 0)}")


def build_world_once(name: str, seed: int, folder: Path) -> Path:
    """The world ``name`` (a preset, with ``+variant``s) built into ``folder`` unless it is already there."""
    from training.synth import build_world

    if not (folder / "world.json").is_file():
        print(f"building world {name} (seed {seed})", flush=True)
        build_world(name, seed, folder, overwrite=True)
    return folder


def ceiling_values(world: Path, out: Path) -> dict[str, dict[str, float]] | None:
    """The oracle's and the two trait probes' list values on ``world`` (cached in OUT/ceilings.json for
    that folder); None without ground truth."""
    if not has_truth(world):
        return None
    path = out / "ceilings.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("data") == str(Path(world).resolve()):
            return cached["values"]
    from training.loop.data import open_features
    from training.eval.evaluate import evaluate_protocol, find_protocol, oracle_scorer

    src = open_features(world)
    proto = find_protocol(world, None, None)
    values = {}
    for kind in CEILINGS:
        pairs, retrieval = oracle_scorer(world, src["voice"], src["face"], kind)
        lists = evaluate_protocol(proto, src["voice"], src["face"], pairs, retrieval)
        values[kind] = {name: e["value"] for name, e in lists.items()}
    atomic_write_text(path, json.dumps({"data": str(Path(world).resolve()), "values": values}, indent=2))
    return values


def _column(values: dict[str, float], lists: tuple[str, ...]) -> float | None:
    got = [values[n] for n in lists if n in values]
    return float(np.mean(got)) if got else None


def summarise(results: list[dict[str, Any]], ceilings: dict[str, dict[str, float]] | None,
              spec: dict[str, Any]) -> dict[str, Any]:
    """Rows of the table: per (method, scoring), mean and std over seeds of each column."""
    rows = []
    for method in spec["methods"]:
        mine = [r for r in results if r["method"] == method["name"]]
        for scoring in method.get("scoring", ["cosine"]):
            row: dict[str, Any] = {"method": method["name"], "scoring": scoring, "seeds": len(mine), "columns": {}}
            for title, lists in COLUMNS:
                vals = [v for v in (_column(r[scoring], lists) for r in mine) if v is not None]
                if vals:
                    row["columns"][title] = (float(np.mean(vals)), float(np.std(vals)))
            if scoring == "fusion" and all("attention" in r for r in mine) and mine:
                for key in ("face_mass", "voice_mass"):
                    vals = [r["attention"][key] for r in mine if key in r["attention"]]
                    if vals:
                        row[key] = (float(np.mean(vals)), float(np.std(vals)))
                row["face_share"] = mine[0]["attention"].get("face_share")
                row["voice_share"] = mine[0]["attention"].get("voice_share")
            row["train_s"] = float(np.mean([r["train_s"] for r in mine]))
            rows.append(row)
    if ceilings is None:
        return {"rows": rows, "oracle": None, "ceilings": None}
    rowed = {kind: {title: _column(values, lists) for title, lists in COLUMNS} for kind, values in ceilings.items()}
    return {"rows": rows, "oracle": rowed["oracle"], "ceilings": rowed}


def format_table(table: dict[str, Any]) -> str:
    titles = [t for t, _ in COLUMNS if any(t in r["columns"] for r in table["rows"])]
    head = ["method", "scoring", *titles, "face attn (share)", "voiced attn (share)", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pm(x):
        return f"{x[0]:.3f} ± {x[1]:.3f}" if x else ""

    def attn(row, key):
        if key + "_mass" not in row:
            return ""
        return f"{pm(row[key + '_mass'])} ({row[key + '_share']:.2f})"

    for r in table["rows"]:
        cells = [r["method"], r["scoring"], *[pm(r["columns"].get(t)) for t in titles],
                 attn(r, "face"), attn(r, "voice"), f"{r['train_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    ceilings = table.get("ceilings") or ({"oracle": table["oracle"]} if table.get("oracle") else {})
    for kind, o in ceilings.items():  # data without ground truth: no ceiling rows
        what = "true traits" if kind == "oracle" else "ridge read-out of the true traits"
        lines.append(f"| {kind} | {what} | " + " | ".join("" if o.get(t) is None else f"{o[t]:.3f}" for t in titles)
                     + " |  |  |  |")
    return "\n".join(lines)


def run_table(spec_name: str, out: str | Path, jobs: int = 2, seeds: list[int] | None = None,
              methods: list[str] | None = None, data: str | Path | None = None) -> dict[str, Any]:
    """Train, evaluate and tabulate every (method, seed) of a spec on its world, or on ``data`` when given."""
    t0 = time.perf_counter()
    spec = read_spec(spec_name)
    if seeds:
        spec["seeds"] = seeds
    if methods:
        unknown = set(methods) - {m["name"] for m in spec["methods"]}
        if unknown:
            raise UserError(f"--methods: unknown {sorted(unknown)}; the spec has {[m['name'] for m in spec['methods']]}")
        spec["methods"] = [m for m in spec["methods"] if m["name"] in methods]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the table")
    if data is not None and not Path(data).is_dir():
        raise UserError(f"--data {data} does not exist (give a feature store or a synthetic world folder)")
    # every (method, seed) config resolved before any work: a bad override fails now, not hours later
    configs = {(m["name"], s): method_config(spec, m, s) for m in spec["methods"] for s in spec["seeds"]}
    out.mkdir(parents=True, exist_ok=True)
    if "worlds" in spec:
        if data is not None:
            raise UserError("--data names one folder, but this spec is a suite of worlds (it builds its own); "
                            "drop --data, or use a one-world spec")
        return _run_suite(spec, configs, out, jobs, t0)
    world = Path(data) if data is not None else ensure_world(spec, out)
    ceilings = ceiling_values(world, out)
    results = _run_tasks(_tasks(spec, configs, world, out / "runs", jobs), jobs)
    table = summarise(results, ceilings, spec)
    table["seconds"] = round(time.perf_counter() - t0, 1)
    table["spec"] = spec
    table["data"] = str(world)
    _write_table(out, table, results)
    return table


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, int(jobs)))


def _tasks(spec: dict[str, Any], configs: dict, world: Path, runs: Path, jobs: int) -> list[tuple]:
    tasks = []
    for m in spec["methods"]:
        for s in spec["seeds"]:
            key = run_key(configs[(m["name"], s)], world)
            tasks.append((spec, m, s, str(world), str(runs / f"{slug(m['name'])}_seed{s}_{key}"), _threads(jobs), key))
    return tasks


def _run_tasks(tasks: list[tuple], jobs: int) -> list[dict[str, Any]]:
    results = []
    with ProcessPoolExecutor(max_workers=max(1, int(jobs)), mp_context=get_context("spawn")) as pool:
        for task, res in zip(tasks, pool.map(_job, tasks)):
            where = Path(task[3]).name
            print(f"{where}: {res['method']} seed {res['seed']}: {res['seconds']:.0f} s", flush=True)
            results.append(res)
    return results


def _write_table(out: Path, table: dict[str, Any], results: list[dict[str, Any]]) -> None:
    atomic_write_text(out / "table.json", json.dumps({"table": table, "results": results}, indent=2))
    atomic_write_text(out / "table.md", format_table(table) + "\n")


def suite_world_names(spec: dict[str, Any]) -> list[str]:
    """The world names of a suite spec: its list, or the suite of training/synth/presets.yaml."""
    from training.synth.presets import suite_names

    names = spec["worlds"]["names"]
    return suite_names() if names == "suite" else [str(n) for n in names]


def _run_suite(spec: dict[str, Any], configs: dict, out: Path, jobs: int, t0: float) -> dict[str, Any]:
    """Every (method, seed) on every world of the suite in one pool; a table per world, then the overview."""
    seed = int(spec["worlds"].get("seed", 0))
    worlds, tasks = {}, []
    for name in suite_world_names(spec):
        folder = worlds[name] = build_world_once(name, seed, out / "worlds" / f"{slug(name)}_{seed}")
        tasks += _tasks(spec, configs, folder, out / slug(name) / "runs", jobs)
    results = _run_tasks(tasks, jobs)
    tables, checks = {}, {}
    for name, folder in worlds.items():
        mine = [r for r, t in zip(results, tasks) if t[3] == str(folder)]
        table = summarise(mine, ceiling_values(folder, out / slug(name)), spec)
        table["data"] = str(folder)
        _write_table(out / slug(name), table, mine)
        tables[name] = table
        checks[name] = check_targets(table, spec.get("targets") or {})
    suite = {"worlds": tables, "targets": checks, "spec": spec, "seconds": round(time.perf_counter() - t0, 1)}
    text = format_suite(tables, checks)
    text += "".join(f"\n\n### {name}\n\n" + format_table(t) for name, t in tables.items())
    atomic_write_text(out / "table.json", json.dumps(suite, indent=2))
    atomic_write_text(out / "table.md", text + "\n")
    return suite


@one_line_errors("python -m training.experiments")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.experiments", description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default="small", help="a name in training/configs/experiments/ or a YAML path")
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=None,
                   help="a feature store or world to run on instead of the spec's world (oracle only with ground truth)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (torch threads are split between them)")
    p.add_argument("--seeds", type=int, nargs="*", help="override the spec's seeds")
    p.add_argument("--methods", nargs="*", help="only these methods (names as in the spec)")
    p.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    table = run_table(args.spec, args.out, args.jobs, args.seeds, args.methods, data=args.data)
    if "worlds" in table:  # a suite
        print(format_suite(table["worlds"], table["targets"]))
        print(f"\n{len(table['worlds'])} worlds, {len(table['spec']['seeds'])} seeds, {table['seconds']:.0f} s in all; "
              f"per-world tables in {args.out}/table.md")
        return 0
    print(format_table(table))
    print(f"\n{len(table['rows'])} rows, {len(table['spec']['seeds'])} seeds, {table['seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
