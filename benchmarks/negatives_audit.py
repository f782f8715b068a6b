"""What FVM's negatives really are, measured with a synthetic world's ground truth.

For a trained checkpoint and a world, the script rebuilds a round's pseudo-labels the way the
trainer does (k-means on pooled frozen features, ``clustering.start_fraction`` of the training
videos), draws training batches with diverse positives, and for every negative-sampling mode
counts, over all sampled (anchor, negative) pairs in both directions:

* ``false_negative``: the negative is truly the anchor's own identity (an impure / split cluster);
* ``same_gender``: the negative shares the anchor's gender-like trait (the only negatives that
  make the match head look past that trait);
* ``group_gender_purity``: how well the coarse groups of the ``group`` modes follow gender.

``hard_clean`` is ``hard`` without the columns ``faa_core.losses.likely_same_person`` flags.

    python benchmarks/negatives_audit.py --world W --checkpoint RUN/best [--batches 200] [--group-share 0.5]

Prints one JSON line per mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faa_core.checkpoint import load_checkpoint  # noqa: E402
from faa_core.clustering import dual_modality_pooling, kmeans  # noqa: E402
from faa_core.losses import likely_same_person, sample_negatives  # noqa: E402
from training.loop.data import PairSampler, VideoIndex  # noqa: E402
from training.loop.negatives import NEGATIVES, coarse_groups, draw_negatives, uses_groups  # noqa: E402
from training.synth import load_world  # noqa: E402

# the trainer's modes (pairs.negatives), plus hard negatives without the columns likely_same_person flags
MODES = NEGATIVES + ("hard_clean",)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--start-fraction", type=float, default=0.15, help="clusters as a fraction of training videos")
    p.add_argument("--groups", type=int, default=2, help="coarse groups of the group modes (pairs.groups)")
    p.add_argument("--group-share", type=float, default=0.5, help="pairs.group_share")
    p.add_argument("--z", type=float, default=3.0, help="likely_same_person outlier threshold")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    world = load_world(args.world)
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    voice, face = world.voice, world.face
    truth = world.truth
    v_ident = truth.items("voice")["identity"]
    f_ident = truth.items("face")["identity"]
    gender = truth.identities["gender"]

    index = VideoIndex(voice, face, "train")
    vg = np.asarray(voice.globals(index.voice_video_items), dtype=np.float32)
    fg = np.asarray(face.globals(index.face_video_items), dtype=np.float32)
    keys, pooled = dual_modality_pooling(vg, index.voice_video, fg, index.face_video)
    k = max(2, int(round(args.start_fraction * len(index))))
    labels = np.full(len(index), -1, dtype=np.int64)
    labels[np.asarray(keys, dtype=np.int64)] = kmeans(pooled, k, niter=20, seed=args.seed).labels
    with torch.no_grad():
        groups = coarse_groups(model, voice, face, index, args.groups, args.seed)
    # each video's truth, through its first voice item
    video_ident = v_ident[index.voice_sorted[index.voice_start]]
    purity = max(np.mean(gender[video_ident] == (groups == g)) for g in range(2)) if args.groups == 2 else None

    sampler = PairSampler(index, labels, diverse=True)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    # videos are drawn by PairSampler; to know each pair's video group we sample videos ourselves via labels
    counts = {m: np.zeros(3) for m in MODES}  # pairs, false negatives, same gender
    scale = float(model.logit_scale.detach().exp().clamp(max=100.0))
    item_video = np.full(len(voice), -1, dtype=np.int64)
    item_video[index.voice_video_items] = index.voice_video
    with torch.no_grad():
        for _ in range(args.batches):
            batch = sampler.sample(args.batch_size, rng)
            bv = torch.from_numpy(np.asarray(voice.globals(batch.voice_items), dtype=np.float32))
            bf = torch.from_numpy(np.asarray(face.globals(batch.face_items), dtype=np.float32))
            ve, fe = model.embed_voice(bv), model.embed_face(bf)
            sim = scale * ve @ fe.T
            lab = torch.from_numpy(batch.labels)
            grp = torch.from_numpy(groups[item_video[batch.voice_items]])
            excl = likely_same_person(bv, bf, z=args.z)
            vi, fi = v_ident[batch.voice_items], f_ident[batch.face_items]
            for mode in MODES:
                if mode == "hard_clean":
                    neg_f, ok_f = sample_negatives(sim, lab, gen, exclude=excl)
                    neg_v, ok_v = sample_negatives(sim.T, lab, gen, exclude=excl.T)
                else:
                    neg_f, ok_f, neg_v, ok_v = draw_negatives(mode, sim, lab, gen, groups=grp if uses_groups(mode) else None,
                                                              group_share=args.group_share)
                a = np.concatenate([vi[ok_f.numpy()], fi[ok_v.numpy()]])
                n = np.concatenate([fi[neg_f[ok_f].numpy()], vi[neg_v[ok_v].numpy()]])
                counts[mode] += [len(a), np.sum(a == n), np.sum(gender[a] == gender[n])]
    for mode in MODES:
        c = counts[mode]
        print(json.dumps({
            "mode": mode, "pairs": int(c[0]), "false_negative": round(c[1] / c[0], 4),
            "same_gender": round(c[2] / c[0], 4), "clusters": k, "groups": args.groups, "group_share": args.group_share,
            "group_gender_purity": None if purity is None else round(float(purity), 4),
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
