"""training.eval.test_matching: generated 1:2 lists on the Wen 2021 test identities."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faa_core.protocols import Identity, RetrievalList, VerificationList, read_protocol, write_wen2021_lists
from training.eval.test_matching import TRIALS_PER_QUERY, wen_test_matching

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "protocols" / "wen2021"


def _toy_protocol(tmp_path: Path):
    genders = {"id1": "m", "id2": "m", "id3": "f", "id4": "f", "id5": "m"}
    idents = [Identity(k, f"N{k}", g, "x", "test") for k, g in genders.items()]
    idents.append(Identity("id9", "Nid9", "m", "x", "train"))
    voices = [f"{k}/v{j}/0000{j}.wav" for k in genders for j in range(2)]
    faces = [f"N{k}/0000{j}.jpg" for k in genders for j in range(3)]
    v_ids = [p.split("/")[0] for p in voices]
    f_ids = [p.split("/")[0][1:] for p in faces]
    retrieval = [RetrievalList("reterival_v2f_test", voices, faces, v_ids, f_ids)]
    verification = [VerificationList("verify_v2f_test", voices[:1], faces[:1], [1])]
    write_wen2021_lists(tmp_path, idents, verification=verification, retrieval=retrieval)
    return read_protocol("wen2021", tmp_path), genders


def test_lists_are_valid_triplets_on_test_identities(tmp_path: Path) -> None:
    proto, genders = _toy_protocol(tmp_path)
    lists = wen_test_matching(proto, seed=3)
    assert sorted(lists) == ["match_f2v_2_test", "match_g_f2v_2_test", "match_g_v2f_2_test", "match_v2f_2_test"]
    v2f = lists["match_v2f_2_test"]
    assert v2f.direction == "v2f" and len(v2f) == 10 * TRIALS_PER_QUERY
    assert len(lists["match_f2v_2_test"]) == 15 * TRIALS_PER_QUERY
    for m in lists.values():
        q_of = proto.identity_of_voice if m.direction == "v2f" else proto.identity_of_face
        c_of = proto.identity_of_face if m.direction == "v2f" else proto.identity_of_voice
        for q, p, n in zip(m.queries, m.positives, m.negatives):
            assert q_of(q) == c_of(p) != c_of(n)
            assert c_of(n) != "id9"  # never a training identity
            if m.name.startswith("match_g_"):
                assert genders[q_of(q)] == genders[c_of(n)]


def test_same_seed_same_lists_other_seed_other_lists(tmp_path: Path) -> None:
    proto, _ = _toy_protocol(tmp_path)
    a, b, c = wen_test_matching(proto, 0), wen_test_matching(proto, 0), wen_test_matching(proto, 1)
    for name in a:
        assert np.array_equal(a[name].negatives, b[name].negatives)
        assert np.array_equal(a[name].positives, b[name].positives)
    assert any(not np.array_equal(a[n].negatives, c[n].negatives) for n in a)


@pytest.mark.skipif(not REAL.is_dir(), reason="the real Wen 2021 protocol files are not here (../shared)")
def test_real_protocol_gives_test_lists_disjoint_from_validation_identities() -> None:
    proto = read_protocol("wen2021", REAL)
    lists = wen_test_matching(proto)
    test_ids = set(proto.ids_in_split("test"))
    m = lists["match_g_v2f_2_test"]
    assert len(m) > 10_000
    assert {proto.identity_of_voice(q) for q in m.queries} <= test_ids
    assert {proto.identity_of_face(n) for n in m.negatives} <= test_ids


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny world and its untrained FAA model (max_rounds=0): enough to score every list."""
    from training.config import load_config
    from training.loop.trainer import Trainer
    from training.synth import build_world

    root = tmp_path_factory.mktemp("tm")
    build_world(preset="tiny", seed=0, out=root / "world")
    cfg = load_config(["faa", "small"], ["schedule.max_rounds=0", "validation.trials=200"])
    Trainer(cfg, root / "world", root / "run", progress=False).train()
    return root / "world", root / "run" / "best"


def test_report_labels_splits_of_a_world(tiny_checkpoint, tmp_path: Path) -> None:
    from training.eval.evaluate import evaluate

    world, ckpt = tiny_checkpoint
    report = evaluate(str(ckpt), world, tmp_path / "eval", scoring="cosine", with_oracle=False)
    splits = {name: e["split"] for name, e in report["lists"].items()}
    assert splits["match_v2f_2_test"] == splits["verify_g_f2v_test"] == splits["reterival_v2f_test"] == "test"
    assert {e["origin"] for e in report["lists"].values()} == {"protocol files"}  # the world has test lists
    assert "| match_v2f_2_test | test |" in (tmp_path / "eval" / "report.md").read_text()


def test_published_style_val_lists_are_marked_and_test_lists_generated(tiny_checkpoint, tmp_path: Path) -> None:
    """A Wen protocol with only ``*_2_val`` matching lists (as published) gets generated test lists."""
    from training.eval.evaluate import evaluate

    world, ckpt = tiny_checkpoint
    proto = tmp_path / "protocol"
    shutil.copytree(world / "protocol", proto)
    for f in proto.glob("match_*_2_test.txt"):
        f.rename(f.with_name(f.name.replace("_2_test", "_2_val")))
    report = evaluate(str(ckpt), world, tmp_path / "eval", protocol_dir=proto, scoring="cosine", with_oracle=False)
    lists = report["lists"]
    assert lists["match_v2f_2_val"]["split"] == "val" and lists["match_v2f_2_val"]["origin"] == "protocol files"
    for name in ("match_v2f_2_test", "match_f2v_2_test", "match_g_v2f_2_test", "match_g_f2v_2_test"):
        assert lists[name]["split"] == "test" and lists[name]["origin"].startswith("generated")
    assert lists["match_v2f_2_test"]["trials"] == 2 * lists["reterival_v2f_test"]["voices"]
    assert "| match_v2f_2_val | val |" in (tmp_path / "eval" / "report.md").read_text()
