"""Trial lists for synthetic worlds: bind to a real protocol, or write our own.

* :func:`bind_layout` lays a world out on a real protocol folder (wen2021 or
  nagrani2018): one synthetic identity per real identity (its VoxCeleb1 id,
  VGGFace1 name and gender, the gender becoming the gender-like trait) and
  exactly the items named in the real lists, grouped into videos by the path's
  video component, so that evaluation runs on the real lists at their real
  sizes. Photos without a video (VGGFace1 ``Name/00000657.jpg``) are each their
  own video. Training identities get preset-style training videos (the real
  training files are not named in any list); validation identities that no
  list names get preset-style validation items.
* :func:`write_world_lists` writes a world's own lists in the Wen 2021 formats
  (through ``faa_core.protocols.write_wen2021_lists``), so one evaluation path
  serves real and synthetic data.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .layout import MODALITIES, LayoutBuilder, WorldLayout
from .presets import WorldSpec

PROTOCOLS = ("wen2021", "nagrani2018")
_CLIP_RE = re.compile(r"^(?P<video>.+)_(?P<n>\d+)$")


def video_component(path: str, modality: str) -> str | None:
    """The video a listed file comes from, or None for a standalone photo.

    ``id10001/<video>/00001.wav``, ``Name/<video>/0000375.jpg`` and
    ``Name/1.6/<video>/0000375.jpg`` name it as the parent folder; Nagrani's
    ``Name/<video>_0000001.wav`` as the file stem before the clip number.
    """
    parts = path.split("/")
    if len(parts) >= 3:
        return parts[-2]
    if modality == "voice":
        m = _CLIP_RE.match(parts[-1].rsplit(".", 1)[0])
        if m:
            return m.group("video")
    return None


def _list_paths(proto: Any) -> dict[str, list[str]]:
    """Every voice and face path named by any list of a faa_core Protocol (first-seen order)."""
    seen: dict[str, dict[str, None]] = {m: {} for m in MODALITIES}

    def add(modality: str, paths: Any) -> None:
        d = seen[modality]
        for p in np.asarray(paths).tolist():
            d.setdefault(p, None)

    for lst in proto.verification.values():
        add("voice", lst.voices)
        add("face", lst.faces)
    for m in proto.matching.values():
        qmod, cmod = ("voice", "face") if m.direction == "v2f" else ("face", "voice")
        add(qmod, m.queries)
        add(cmod, m.positives)
        add(cmod, m.negatives)
    for r in proto.retrieval.values():
        add("voice", r.voices)
        add("face", r.faces)
    return {m: list(d) for m, d in seen.items()}


def _split_of(protocol_split: str) -> str:
    """Nagrani's seen_heard / unseen_unheard identities are test identities."""
    return protocol_split if protocol_split in ("train", "val", "test") else "test"


def bind_layout(spec: WorldSpec, seed: int, protocol: str, folder: str | Path) -> WorldLayout:
    """A manifest whose identities and evaluation items are those of a real protocol folder."""
    from faa_core.protocols import read_protocol

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    proto = read_protocol(protocol, folder)
    if not proto.identities:
        raise ValueError(f"{folder}: the {protocol} protocol lists no identities")
    rng = np.random.default_rng([int(seed), 12])
    idents = list(proto.identities.values())
    vox = np.array([i.voice_id for i in idents], dtype=str)
    names = np.array([i.face_id for i in idents], dtype=str)
    splits = np.array([_split_of(i.split) for i in idents], dtype=str)
    raw_gender = [i.gender.strip().lower()[:1] for i in idents]
    genders = np.array(
        [g if g in ("m", "f") else ("f" if rng.random() < spec.traits.gender_p else "m") for g in raw_gender], dtype=str
    )
    index = {v: k for k, v in enumerate(vox.tolist())}

    b = LayoutBuilder(rng)
    named = _list_paths(proto)
    has_items = np.zeros(len(idents), dtype=bool)
    for modality in MODALITIES:
        resolve = proto.identity_of_voice if modality == "voice" else proto.identity_of_face
        for path in named[modality]:
            i = index[resolve(path)]
            has_items[i] = True
            video = video_component(path, modality)
            key = f"{vox[i]}/{video}" if video is not None else path.rsplit(".", 1)[0]
            split = "test" if splits[i] == "train" else str(splits[i])  # seen-heard test items
            b.item(modality, path, b.video(key, i), i, split)
    for i in range(len(idents)):
        if splits[i] == "train":
            b.add_training_videos(spec, i, vox[i], names[i], spec.videos_per_identity["train"])
        elif splits[i] == "val" and not has_items[i]:
            b.add_eval_items(spec, i, vox[i], names[i], spec.videos_per_identity["val"], "val")
    return WorldLayout(
        vox_ids=vox,
        names=names,
        genders=genders,
        nationalities=np.array([i.nationality or "unknown" for i in idents], dtype=str),
        id_splits=splits,
        video_keys=np.asarray(b.video_keys, dtype=str),
        video_identity=np.asarray(b.video_identity, dtype=np.int64),
        items={m: b.items_of(m) for m in MODALITIES},
    )


def copy_protocol(folder: str | Path, out: Path) -> list[Path]:
    """Copy a protocol folder's files (not permissions: the originals are read-only)."""
    folder = Path(folder)
    written: list[Path] = []
    for src in sorted(folder.rglob("*")):
        if src.is_file():
            dst = out / src.relative_to(folder)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(dst)
    return written


# ---------------------------------------------------------------------------
# a world's own lists (Wen 2021 formats)
# ---------------------------------------------------------------------------


class _Pools:
    """Items of one split grouped by identity and by (gender, identity), for drawing trials."""

    def __init__(self, manifest: WorldLayout, split: str) -> None:
        self.m = manifest
        self.by_id: dict[str, dict[int, np.ndarray]] = {}
        for mod in MODALITIES:
            it = manifest.items[mod]
            sel = np.flatnonzero(it.split == split)
            groups: dict[int, list[int]] = {}
            for k in sel.tolist():
                groups.setdefault(int(it.identity[k]), []).append(k)
            self.by_id[mod] = {i: np.array(v) for i, v in groups.items()}
        both = sorted(set(self.by_id["voice"]) & set(self.by_id["face"]))
        self.identities = np.array(both, dtype=np.int64)

    def query_items(self, mod: str) -> np.ndarray:
        return np.concatenate([self.by_id[mod][i] for i in self.identities.tolist()]) if len(self.identities) else np.zeros(0, int)

    def other_identity(self, rng: np.random.Generator, i: int, same_gender: bool) -> int:
        cands = self.identities[self.identities != i]
        if same_gender:
            g = self.m.genders[cands] == self.m.genders[i]
            if g.any():
                cands = cands[g]
        return int(rng.choice(cands))

    def pick(self, rng: np.random.Generator, mod: str, i: int) -> int:
        return int(rng.choice(self.by_id[mod][i]))


def _trials(manifest: WorldLayout, split: str, rng: np.random.Generator, negatives: int) -> dict[str, Any]:
    """Verification pairs, 1:2 triplets and retrieval galleries of one split, both directions, U and G."""
    pools = _Pools(manifest, split)
    if len(pools.identities) < 2:
        raise ValueError(f"split {split!r} needs at least 2 identities with faces and voices to make trials")
    ids = {m: manifest.items[m].ids for m in MODALITIES}
    ident = {m: manifest.items[m].identity for m in MODALITIES}
    out: dict[str, Any] = {"verify": {}, "match": {}}
    for qmod, cmod, direction in (("voice", "face", "v2f"), ("face", "voice", "f2v")):
        queries = pools.query_items(qmod)
        for g, tag in ((False, ""), (True, "g_")):
            pairs: list[tuple[int, int]] = []
            triplets: list[tuple[int, int, int]] = []
            for q in queries.tolist():
                i = int(ident[qmod][q])
                group = [pools.pick(rng, cmod, i)] + [
                    pools.pick(rng, cmod, pools.other_identity(rng, i, g)) for _ in range(negatives)
                ]
                for c in rng.permutation(group).tolist():
                    pairs.append((q, c))
                triplets.append((q, pools.pick(rng, cmod, i), pools.pick(rng, cmod, pools.other_identity(rng, i, g))))
            out["verify"][f"{tag}{direction}"] = (qmod, cmod, pairs)
            out["match"][f"{tag}{direction}"] = triplets
    out["retrieval"] = (pools.query_items("voice"), pools.query_items("face"))
    out["ids"] = ids
    out["ident"] = ident
    return out


def write_world_lists(manifest: WorldLayout, spec: WorldSpec, seed: int, out: Path) -> list[Path]:
    """Wen 2021 format lists of an unbound world into ``out``.

    Test split: ``verify_{v2f,f2v}_test``, ``verify_g_{v2f,f2v}_test`` (negatives
    of the same gender-like trait), ``match_{v2f,f2v}_2_test`` and
    ``match_g_{v2f,f2v}_2_test`` (Wen's triplet format; on the test split, hence ``test``),
    ``reterival_{v2f,f2v}_test``. Val split: ``verify_v2f_val`` for model
    selection. Plus ``vox1_{train,val,test}.csv``.
    """
    from faa_core.protocols import Identity, MatchingList, RetrievalList, VerificationList, write_wen2021_lists

    rng = np.random.default_rng([int(seed), 5])
    m = manifest
    vox = m.vox_ids
    identities = [
        Identity(str(vox[i]), str(m.names[i]), str(m.genders[i]), str(m.nationalities[i]), str(m.id_splits[i]))
        for i in range(m.n_identities)
    ]
    test = _trials(m, "test", rng, spec.lists.verify_negatives)
    ids, ident = test["ids"], test["ident"]

    def vlist(name: str, qmod: str, cmod: str, pairs: list[tuple[int, int]]) -> VerificationList:
        q = np.array([p[0] for p in pairs], dtype=np.int64)
        c = np.array([p[1] for p in pairs], dtype=np.int64)
        v, f = (q, c) if qmod == "voice" else (c, q)
        labels = (ident["voice"][v] == ident["face"][f]).astype(np.int8)
        return VerificationList(name, ids["voice"][v], ids["face"][f], labels)

    verification = [
        vlist(f"verify_{key}_test", *test["verify"][key])
        for key in ("v2f", "f2v", "g_v2f", "g_f2v")
    ]
    matching = []
    for key in ("v2f", "f2v", "g_v2f", "g_f2v"):
        direction = key[-3:]
        qmod, cmod = ("voice", "face") if direction == "v2f" else ("face", "voice")
        t = np.array(test["match"][key], dtype=np.int64).reshape(-1, 3)
        matching.append(
            MatchingList(f"match_{key}_2_test", direction, ids[qmod][t[:, 0]], ids[cmod][t[:, 1]], ids[cmod][t[:, 2]])
        )
    rv, rf = test["retrieval"]
    retrieval = [
        RetrievalList(f"reterival_{d}_test", ids["voice"][rv], ids["face"][rf], vox[ident["voice"][rv]], vox[ident["face"][rf]])
        for d in ("v2f", "f2v")
    ]
    if spec.identities["val"] >= 2:
        val = _trials(m, "val", rng, spec.lists.val_negatives)
        verification.append(vlist("verify_v2f_val", *val["verify"]["v2f"]))
    return write_wen2021_lists(
        out, identities, verification=verification, matching=matching, retrieval=retrieval, overwrite=True
    )
