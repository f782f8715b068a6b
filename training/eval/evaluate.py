"""``python -m training.evaluate --checkpoint CKPT --data DIR --out OUT``: every task of a protocol.

Reads the protocol's trial lists (Wen 2021 or Nagrani 2018 formats; a
synthetic world keeps its own Wen-format lists in ``DIR/protocol/``), scores
them with the checkpoint (fusion, cosine or combined) and writes
``OUT/report.json``, ``OUT/report.md`` and ``OUT/roc.png``; with
``--dump-scores`` also every trial's score under ``OUT/scores/``. On a
synthetic world the oracle's numbers come in the same structure.

Distributed: ``torchrun --nproc_per_node N -m training.evaluate ...`` splits
the fusion scoring of the protocol's distinct pairs (the costly part) into N
contiguous shards; rank 0 collects every list's pairs, broadcasts them,
gathers the shards' probabilities and does the rest (cosine scores,
retrieval, metrics, oracle, report) alone. Other ranks write nothing.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from faa_core.checkpoint import load_checkpoint
from faa_core.fileio import atomic_write, atomic_write_json
from faa_core.metrics import matching_accuracy, matching_trials, one_to_n_accuracy, retrieval_map, verification_auc
from faa_core.protocols import Protocol, detect_protocol, read_protocol

from training.loop import distributed as dist_utils
from training.loop.data import open_features
from training.eval.item_ids import LegacyIdSource
from training.eval.one_to_n import evaluate_one_to_n
from training.eval.scoring import embed_items, fusion_probabilities, score_pairs
from training.eval.test_matching import ORIGIN as TEST_MATCHING_ORIGIN, wen_test_matching

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (voice items, face items) -> scores
DUMP_RETRIEVAL_MAX = 5000


def find_protocol(data_dir: Path, protocol: Optional[str], protocol_dir: Optional[Path]) -> Protocol:
    folder = protocol_dir or (data_dir / "protocol")
    name = protocol or detect_protocol(folder)
    if name is None:
        raise FileNotFoundError(f"no protocol lists found in {folder}; pass --protocol-dir")
    return read_protocol(name, folder)


def _items(source: Any, ids: np.ndarray) -> np.ndarray:
    return source.index([str(i) for i in ids])


def _write_csv(path: Path, header: list[str], columns: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(zip(*columns))


def evaluate_protocol(
    protocol: Protocol,
    voice: Any,
    face: Any,
    score: PairScorer,
    retrieval_sim: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rerank: Optional[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = None,
    dump_dir: Optional[Path] = None,
    curves: Optional[dict[str, Any]] = None,
    log: Optional[Callable[[str], None]] = None,
) -> dict[str, Any]:
    """Metrics of every list; ``score`` gives pair scores, ``retrieval_sim`` a voice x face matrix."""
    lists: dict[str, Any] = {}
    for name, vl in sorted(protocol.verification.items()):
        t0 = time.perf_counter()
        v, f = _items(voice, vl.voices), _items(face, vl.faces)
        s = score(v, f)
        lists[name] = {"task": "verification", "metric": "auc", "value": verification_auc(s, vl.labels), "trials": len(vl),
                       "seconds": round(time.perf_counter() - t0, 2)}
        _log(log, name, lists[name])
        if curves is not None:
            curves[name] = (s, np.asarray(vl.labels))
        if dump_dir is not None:
            _write_csv(dump_dir / f"{name}.csv", ["voice", "face", "label", "score"], [vl.voices, vl.faces, vl.labels, s])
    for name, ml in sorted(protocol.matching.items()):
        t0 = time.perf_counter()
        if ml.voices_are_queries:
            q = _items(voice, ml.queries)
            sp, sn = score(q, _items(face, ml.positives)), score(q, _items(face, ml.negatives))
            header = ["voice", "face_pos", "face_neg", "score_pos", "score_neg"]
        else:
            q = _items(face, ml.queries)
            sp, sn = score(_items(voice, ml.positives), q), score(_items(voice, ml.negatives), q)
            header = ["face", "voice_pos", "voice_neg", "score_pos", "score_neg"]
        lists[name] = {
            "task": "matching", "direction": ml.direction, "metric": "accuracy",
            "value": matching_accuracy(sp, sn), "trials": len(ml), "seconds": round(time.perf_counter() - t0, 2),
        }
        _log(log, name, lists[name])
        if dump_dir is not None:
            _write_csv(dump_dir / f"{name}.csv", header, [ml.queries, ml.positives, ml.negatives, sp, sn])
    for name, rl in sorted(protocol.retrieval.items()):
        t0 = time.perf_counter()
        v, f = _items(voice, rl.voices), _items(face, rl.faces)
        sim = retrieval_sim(v, f)
        entry: dict[str, Any] = {"task": "retrieval", "metric": "map", "voices": len(v), "faces": len(f)}
        directions = rl.directions
        for d in directions:
            mat = sim if d == "v2f" else sim.T
            q_ids, g_ids = (rl.voice_identities, rl.face_identities) if d == "v2f" else (rl.face_identities, rl.voice_identities)
            entry[f"{d}_cosine"] = retrieval_map(mat, q_ids, g_ids)
            if rerank is not None:
                mat = rerank(mat, v, f) if d == "v2f" else rerank(mat, f, v, faces_are_queries=True)
            entry[d] = retrieval_map(mat, q_ids, g_ids)
            n_max = min(10, len(np.unique(g_ids)))
            if n_max >= 2:
                queries, gallery = (v, f) if d == "v2f" else (f, v)
                curve = _one_to_n_curve(score, d, queries, gallery, q_ids, g_ids, range(2, n_max + 1))
                entry[f"{d}_matching_1_to_n"] = {str(k): a for k, a in curve.items()}
            if dump_dir is not None and len(v) <= DUMP_RETRIEVAL_MAX and len(f) <= DUMP_RETRIEVAL_MAX:
                dump_dir.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    dump_dir / f"retrieval_{d}.npz", scores=mat.astype(np.float32),
                    query_identities=np.asarray(q_ids), gallery_identities=np.asarray(g_ids),
                )
        entry["value"] = float(np.mean([entry[d] for d in directions]))
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        lists[name] = entry
        _log(log, name, entry)
    return lists


def _one_to_n_curve(
    score: PairScorer, direction: str, queries: np.ndarray, gallery: np.ndarray,
    q_ids: np.ndarray, g_ids: np.ndarray, ns: range,
) -> dict[int, float]:
    """1:N accuracy for each N on a retrieval list's items, scored by ``score`` (the report's scoring).

    Why not the retrieval matrix: that is cosine (re-ranked at the top only),
    and a curve under fusion scoring must use the fusion scores like every
    other number of the report. All N are scored in one call.
    """
    trials = matching_trials(q_ids, g_ids, ns)
    q_all = np.concatenate([np.repeat(queries[q], cand.shape[1]) for q, cand in trials.values()])
    g_all = np.concatenate([gallery[cand.reshape(-1)] for _, cand in trials.values()])
    s = score(q_all, g_all) if direction == "v2f" else score(g_all, q_all)
    out, lo = {}, 0
    for n, (q, cand) in trials.items():
        out[n] = one_to_n_accuracy(np.asarray(s[lo : lo + cand.size]).reshape(cand.shape))
        lo += cand.size
    return out


def _log(log: Optional[Callable[[str], None]], name: str, entry: dict[str, Any]) -> None:
    if log is not None:
        log(f"{name}: {entry['metric']} {entry['value']:.4f} ({entry['seconds']:.1f} s)")


class ModelScorer:
    """Pair scores, retrieval matrices and top-k re-ranking from one checkpoint.

    :meth:`prefetch` scores every pair a protocol will ask for in one pass,
    so each distinct voice and face goes through the encoder's one-sided work
    once for the whole protocol instead of once per list.
    """

    def __init__(self, model, voice, face, scoring: str, rerank_k: int) -> None:
        self.model, self.voice, self.face, self.scoring, self.k = model, voice, face, scoring, rerank_k
        self._keys = np.zeros(0, dtype=np.int64)  # sorted pair keys (voice * n_faces + face) ...
        self._probs = np.zeros(0, dtype=np.float32)  # ... and their fusion probabilities
        self._sims: dict[tuple[bytes, bytes], np.ndarray] = {}
        self._tops: dict[tuple, np.ndarray] = {}

    @property
    def uses_fusion(self) -> bool:
        return self.scoring != "cosine"

    def _pair_keys(self, v: np.ndarray, f: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=np.int64) * len(self.face.ids) + np.asarray(f, dtype=np.int64)

    def _fusion(self, v: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Fusion probabilities, from the prefetched ones where possible."""
        keys = self._pair_keys(v, f)
        pos = np.minimum(np.searchsorted(self._keys, keys), max(len(self._keys) - 1, 0))
        hit = (self._keys[pos] == keys) if len(self._keys) else np.zeros(len(keys), dtype=bool)
        out = np.empty(len(keys), dtype=np.float32)
        out[hit] = self._probs[pos[hit]]
        if not hit.all():
            miss = ~hit
            out[miss] = fusion_probabilities(self.model, self.voice, self.face, np.asarray(v)[miss], np.asarray(f)[miss])
        return out

    def _new_keys(self, v: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Sorted distinct pair keys of (v, f) not scored yet."""
        keys = np.unique(np.concatenate([self._keys, self._pair_keys(v, f)]))
        return keys[~np.isin(keys, self._keys)]

    def _score_keys(self, keys: np.ndarray) -> np.ndarray:
        n = len(self.face.ids)
        return fusion_probabilities(self.model, self.voice, self.face, keys // n, keys % n)

    def _store(self, new: np.ndarray, probs: np.ndarray) -> None:
        all_keys = np.concatenate([self._keys, new])
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._probs = all_keys[order], np.concatenate([self._probs, probs])[order]

    def prefetch(self, v: np.ndarray, f: np.ndarray) -> None:
        """Score these pairs now, all in one pass, and keep the probabilities."""
        if not self.uses_fusion or len(v) == 0:
            return
        new = self._new_keys(v, f)
        self._store(new, self._score_keys(new))

    def prefetch_protocol(self, protocol: Protocol) -> None:
        """Every pair of every list, and the retrieval candidates to re-rank, in one pass."""
        pairs = self.protocol_pairs(protocol)
        if pairs is not None:
            self.prefetch(*pairs)

    def prefetch_protocol_sharded(self, protocol: Protocol) -> None:
        """:meth:`prefetch_protocol` split over the ranks of a torchrun group (collective call).

        Rank 0 finds the pairs (it needs the retrieval matrices for the
        re-ranking candidates anyway) and broadcasts their keys; each rank
        scores a contiguous shard of the sorted keys (so a shard holds few
        distinct voices and the one-sided encoder work is barely repeated);
        rank 0 gathers the probabilities. Only rank 0's scorer is complete.
        """
        new = None
        if dist_utils.is_main():
            pairs = self.protocol_pairs(protocol)
            new = self._new_keys(*pairs) if pairs is not None and len(pairs[0]) else np.zeros(0, dtype=np.int64)
        new = dist_utils.broadcast_object(new)
        lo, hi = dist_utils.shard_bounds(len(new), dist_utils.world_size(), dist_utils.rank())
        parts = dist_utils.gather_objects(self._score_keys(new[lo:hi]))
        if parts is not None and len(new):
            self._store(new, np.concatenate(parts))

    def protocol_pairs(self, protocol: Protocol) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(voice items, face items) of every pair the protocol will ask fusion for (None: no fusion)."""
        if not self.uses_fusion:
            return None
        vs, fs = [], []
        for vl in protocol.verification.values():
            vs.append(_items(self.voice, vl.voices))
            fs.append(_items(self.face, vl.faces))
        for ml in protocol.matching.values():
            if ml.voices_are_queries:
                q = _items(self.voice, ml.queries)
                vs += [q, q]
                fs += [_items(self.face, ml.positives), _items(self.face, ml.negatives)]
            else:
                q = _items(self.face, ml.queries)
                vs += [_items(self.voice, ml.positives), _items(self.voice, ml.negatives)]
                fs += [q, q]
        for name, rl in protocol.retrieval.items():
            v, f = _items(self.voice, rl.voices), _items(self.face, rl.faces)
            sim = self.retrieval(v, f)
            for d in rl.directions:
                mat = sim if d == "v2f" else sim.T
                top = self._top(mat)
                q_items = np.repeat(v if d == "v2f" else f, top.shape[1])
                g_items = (f if d == "v2f" else v)[top.reshape(-1)]
                vs.append(q_items if d == "v2f" else g_items)
                fs.append(g_items if d == "v2f" else q_items)
        if not vs:
            return None
        return np.concatenate(vs), np.concatenate(fs)

    def pairs(self, v: np.ndarray, f: np.ndarray) -> np.ndarray:
        cos01 = score_pairs(self.model, self.voice, self.face, v, f, "cosine")
        if self.scoring == "cosine":
            return cos01
        prob = self._fusion(v, f)
        return prob if self.scoring == "fusion" else (prob + cos01) / 2.0

    @torch.inference_mode()
    def retrieval(self, v: np.ndarray, f: np.ndarray) -> np.ndarray:
        key = (np.asarray(v).tobytes(), np.asarray(f).tobytes())
        if key not in self._sims:
            ve = embed_items(self.model, self.voice, v, "voice")
            fe = embed_items(self.model, self.face, f, "face")
            self._sims = {key: (ve @ fe.T).float().numpy()}  # keep one matrix: they are large
            self._tops = {}
        return self._sims[key]

    def _top(self, sim: np.ndarray) -> np.ndarray:
        """Each row's top-k columns by cosine (torch.topk: no full-size index array)."""
        k = min(self.k, sim.shape[1])
        # the same matrix (or its transpose) comes back for each direction: key on its memory layout
        cache_key = (sim.__array_interface__["data"][0], sim.shape, sim.strides, k)
        if cache_key not in self._tops:
            self._tops[cache_key] = torch.topk(torch.from_numpy(np.ascontiguousarray(sim)), k, dim=1).indices.numpy()
        return self._tops[cache_key]

    @torch.inference_mode()
    def rerank(self, sim: np.ndarray, queries: np.ndarray, gallery: np.ndarray, faces_are_queries: bool = False) -> np.ndarray:
        """Move each query's top-k (by cosine) above the rest, ordered by the match head."""
        k = min(self.k, sim.shape[1])
        if k <= 0 or not self.uses_fusion:
            return sim
        top = self._top(sim)
        q_items = np.repeat(queries, k)
        g_items = gallery[top.reshape(-1)]
        v_items, f_items = (g_items, q_items) if faces_are_queries else (q_items, g_items)
        prob = self._fusion(v_items, f_items)
        out = sim.astype(np.float32, copy=True)
        np.put_along_axis(out, top, 2.0 + prob.reshape(-1, k), axis=1)
        return out


def oracle_scorer(data_dir: Path, voice, face, kind: str = "oracle"):
    """The synthetic world's oracle (or ``kind`` "probe_global" / "probe_tokens", its reachable
    ceiling from training.synth.probe) as pair scorer and retrieval matrix (None on real data)."""
    if not (data_dir / "world.json").is_file() or not (data_dir / "truth").is_dir():
        return None  # a world is what build_world writes; a folder that merely holds truth/ is not one
    from training.synth import load_world, oracle_scores
    from training.synth.probe import get_probe

    world = load_world(data_dir)
    if kind == "oracle":
        score = lambda v_ids, f_ids, matrix=False: oracle_scores(world, v_ids, f_ids, matrix=matrix)  # noqa: E731
    else:
        score = get_probe(world, kind.removeprefix("probe_")).scores  # fitted now: ValueError if it cannot be

    def pairs(v, f):
        return score(voice.ids[v], face.ids[f])

    last: dict[tuple[bytes, bytes], np.ndarray] = {}

    def retrieval(v, f):
        # the v2f and f2v retrieval lists hold the same items: build the (large) matrix once
        key = (np.asarray(v).tobytes(), np.asarray(f).tobytes())
        if key not in last:
            last.clear()
            last[key] = score(voice.ids[v], face.ids[f], matrix=True)
        return last[key]

    return pairs, retrieval


_VAL_NAME = re.compile(r"(^|_)val(_|$)")


def label_splits(lists: dict[str, Any], generated: Iterable[str] = ()) -> None:
    """Mark every report entry with the identities it is on (``split``) and where its trials came from.

    A list on validation identities (``*_val``) measures the data that picked the best round, so
    it must never pass for a test number; lists this project generated say so (``origin``).
    """
    generated = set(generated)
    for name, entry in lists.items():
        entry["split"] = "val" if _VAL_NAME.search(name) else "test"
        entry["origin"] = f"generated ({TEST_MATCHING_ORIGIN})" if name in generated else "protocol files"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = [f"# Evaluation: {report['protocol']} ({report['scoring']} scoring)", "",
             f"checkpoint `{report['checkpoint']}`, data `{report['data']}`", "",
             "Lists on `val` identities are the ones that chose the best round: validation numbers, not "
             "test numbers. `generated` lists are this project's (seeded), not published ones.", "",
             "| list | split | task | metric | trials | model | oracle |", "|---|---|---|---|---|---|---|"]
    oracle = report.get("oracle", {}).get("lists", {})
    for name, e in report["lists"].items():
        trials = e.get("trials", f"{e.get('voices')}x{e.get('faces')}")
        o = oracle.get(name, {}).get("value")
        split = e.get("split", "") + (" (generated)" if str(e.get("origin", "")).startswith("generated") else "")
        lines.append(f"| {name} | {split} | {e['task']} | {e['metric']} | {trials} | {e['value']:.4f} | "
                     f"{'' if o is None else f'{o:.4f}'} |")
    path.write_text("\n".join(lines) + "\n")


def plot_roc(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (s, y) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} ({verification_auc(s, y):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(
    checkpoint: str, data_dir: str | Path, out: str | Path, protocol: Optional[str] = None,
    protocol_dir: Optional[str | Path] = None, scoring: str = "fusion", rerank_k: int = 10,
    dump_scores: bool = False, with_oracle: bool = True, log: Optional[Callable[[str], None]] = None,
) -> dict[str, Any]:
    """Score every list of the protocol; ``log`` receives one line per finished list.

    Under torchrun every rank must call it: the fusion scoring is sharded,
    and only rank 0 gets (and writes) the report; the others get ``{}``.
    """
    t0 = time.perf_counter()
    data_dir, out = Path(data_dir), Path(out)
    main, world = dist_utils.is_main(), dist_utils.world_size()
    if main:
        out.mkdir(parents=True, exist_ok=True)
    model, card = load_checkpoint(checkpoint)
    src = open_features(data_dir)
    proto = find_protocol(data_dir, protocol, Path(protocol_dir) if protocol_dir else None)
    # Wen 2021 publishes 1:2 matching on validation identities only: add this project's test lists
    generated = {k: v for k, v in wen_test_matching(proto).items() if k not in proto.matching}
    if generated:
        proto = dataclasses.replace(proto, matching={**proto.matching, **generated})
    # lists may name items by the first VoxCeleb1 release's paths (Nagrani et al.'s verification lists)
    voice, face = LegacyIdSource(src["voice"], "voice", proto), LegacyIdSource(src["face"], "face", proto)
    scorer = ModelScorer(model, voice, face, scoring, rerank_k)
    t_pre = time.perf_counter()
    if world > 1:
        scorer.prefetch_protocol_sharded(proto)
        if not main:
            return {}
    else:
        scorer.prefetch_protocol(proto)
    if log is not None and scorer.uses_fusion:
        on = f" on {world} processes" if world > 1 else ""
        log(f"fusion: {len(scorer._keys)} distinct pairs scored in {time.perf_counter() - t_pre:.1f} s{on}")
    curves: dict[str, Any] = {}
    lists = evaluate_protocol(
        proto, voice, face, scorer.pairs, scorer.retrieval, scorer.rerank,
        dump_dir=out / "scores" if dump_scores else None, curves=curves, log=log,
    )
    lists.update(evaluate_one_to_n(Path(protocol_dir) if protocol_dir else data_dir / "protocol",
                                   voice, face, scorer.pairs, log))
    label_splits(lists, generated)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "data": str(data_dir), "protocol": proto.name,
        "scoring": scoring, "rerank_k": rerank_k if scoring != "cosine" else 0,
        "synthetic_checkpoint": bool(card.get("synthetic")), "lists": lists,
    }
    report["seconds"] = round(time.perf_counter() - t0, 2)
    # the model's numbers are on disk before any optional extra runs: nothing computed can be lost
    _write_report(report, out)
    if curves:
        plot_roc(curves, out / "roc.png")
    if with_oracle and _add_ground_truth(report, data_dir, proto, voice, face, log):
        _write_report(report, out)
    return report


def _add_ground_truth(report: dict[str, Any], data_dir: Path, proto: Protocol, voice, face,
                      log: Optional[Callable[[str], None]]) -> bool:
    """The world's oracle and probes into ``report`` (False: not a world, nothing added).

    Optional extras: a failure is one line in the log and ``report["oracle"]["error"]``,
    never the loss of the model's report.
    """
    try:
        oracle = oracle_scorer(data_dir, voice, face)
        if oracle is None:
            return False
        if log is not None:
            log("oracle:")
        report["oracle"] = {"lists": evaluate_protocol(proto, voice, face, oracle[0], oracle[1], log=log)}
        for kind in ("probe_global", "probe_tokens"):  # the reachable ceiling beside the oracle
            try:
                probe = oracle_scorer(data_dir, voice, face, kind)
            except ValueError:  # e.g. a world without tokens
                continue
            if log is not None:
                log(f"{kind}:")
            report[kind] = {"lists": evaluate_protocol(proto, voice, face, probe[0], probe[1], log=log)}
    except Exception as exc:  # noqa: BLE001 - any failure of an extra is reported, not raised
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        report.setdefault("oracle", {})["error"] = reason
        if log is not None:
            log(f"oracle: not computed ({reason}); the model's report is complete")
    return True


def _write_report(report: dict[str, Any], out: Path) -> None:
    """report.json and report.md, each replaced atomically."""
    atomic_write_json(out / "report.json", report)
    atomic_write(out / "report.md", lambda tmp: write_markdown(report, tmp))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--protocol", choices=["wen2021", "nagrani2018"], default=None)
    p.add_argument("--protocol-dir", default=None, help="folder of the lists (default: DATA/protocol)")
    p.add_argument("--scoring", choices=["fusion", "cosine", "combined"], default="fusion")
    p.add_argument("--rerank-k", type=int, default=10, help="retrieval: re-rank each query's top-k with the match head")
    p.add_argument("--dump-scores", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    dist_utils.init_from_env()  # a no-op without torchrun
    try:
        main_rank = dist_utils.is_main()
        log = None if args.quiet or not main_rank else (lambda line: print(line, file=sys.stderr, flush=True))
        report = evaluate(args.checkpoint, args.data, args.out, args.protocol, args.protocol_dir,
                          args.scoring, args.rerank_k, args.dump_scores, log=log)
    finally:
        dist_utils.teardown()
    if not main_rank:
        return 0
    print((Path(args.out) / "report.md").read_text())
    return 0 if report else 1


if __name__ == "__main__":
    raise SystemExit(main())
