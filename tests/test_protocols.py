"""Protocol readers: small hand-made folders in both formats, the Wen writer, and the real files when present."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from faa_core.protocols import (
    Identity,
    MatchingList,
    Protocol,
    ProtocolError,
    RetrievalList,
    VerificationList,
    detect_protocol,
    read_nagrani2018,
    read_protocol,
    read_wen2021,
    write_wen2021_lists,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "protocols"
HEADER = "VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set\r\n"


# ---------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def make_wen(folder: Path) -> Path:
    """A tiny Wen folder: CRLF CSVs with `none` rows, lists with and without final newlines."""
    _write(folder / "vox1_train.csv", HEADER + "id10001,A.J._Buckley,m,Ireland,none\r\nid10002,Alice_A,f,USA,dev\r\n")
    _write(folder / "vox1_val.csv", HEADER + "id10003,Bob_B,m,UK,dev\r\nid10004,Carol_C,f,USA,dev\r\n")
    _write(
        folder / "vox1_test.csv",
        HEADER + "id10005,Dan_D,m,USA,dev\r\nid10006,Eve_E,f,India,test\r\nid10007,Skip_Me,m,USA,none\r\n",
    )
    _write(
        folder / "verify_v2f_test.txt",
        "id10005/a/00001.wav Dan_D/00000001.jpg\n"
        "id10005/a/00001.wav Eve_E/00000002.jpg\n"
        "id10006/b/00001.wav Eve_E/00000003.jpg",  # no final newline, as in some real files
    )
    _write(
        folder / "verify_f2v_test.txt",
        "Eve_E/00000003.jpg id10005/a/00001.wav\nDan_D/00000001.jpg id10005/a/00002.wav\n",
    )
    _write(
        folder / "match_v2f_2_val.txt",
        "id10003/x/00001.wav Bob_B/00000001.jpg Carol_C/00000002.jpg\n"
        "id10004/y/00001.wav Carol_C/00000003.jpg Bob_B/00000004.jpg\n",
    )
    wavs = "id10005/a/00001.wav id10005/a/00002.wav id10006/b/00001.wav "  # trailing space as in the originals
    jpgs = "Dan_D/00000001.jpg Eve_E/00000002.jpg Eve_E/00000003.jpg Eve_E/00000004.jpg "
    _write(folder / "reterival_v2f_test.txt", wavs + "\n" + jpgs + "\n")
    _write(folder / "reterival_f2v_test.txt", jpgs + "\n" + wavs + "\n")
    return folder


def make_nagrani(folder: Path) -> Path:
    """A tiny Nagrani folder with the real quirks: trailing spaces, TAB meta, headers, name/id prefixes."""
    _write(folder / "identity_splits.txt", "A.J._Buckley 1 \nBob_B 2 \nCarol_C 4 \nDan_D 4 \n")
    _write(
        folder / "vox1_meta.csv",
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
        "id10002\tBob_B\tm\tUK\tdev\n"
        "id10003\tCarol_C\tf\tUSA\ttest\n"
        "id10004\tDan_D\tm\tUSA\tdev\n",
    )
    _write(folder / "splits_README.txt", "not a list\n")
    _write(folder / "veriflist" / "README.txt", "This folder contains ...\n")
    _write(
        folder / "veriflist" / "veriflist_test_random_unseenunheard.txt",
        "id,voice-speaker-id,face-speaker-id,label,voice-path,face-path\n"
        "1,3,3,1,Carol_C/abc_0000001.wav,Carol_C/abc/0000100.jpg\n"
        "2,3,4,0,Carol_C/abc_0000002.wav,Dan_D/xyz/0000200.jpg\n"
        "3,4,4,1,Dan_D/xyz_0000001.wav,Dan_D/xyz/0000300.jpg\n",
    )
    _write(
        folder / "matching" / "matching_v2f_U.csv",
        "id10003/abc/00001.wav Carol_C/1.6/abc/0000100.jpg Dan_D/1.6/xyz/0000200.jpg\n"
        "id10004/xyz/00001.wav Dan_D/1.6/xyz/0000300.jpg Carol_C/1.6/abc/0000400.jpg\n",
    )
    _write(
        folder / "matching" / "matching_f2v_U.csv",
        "Carol_C/1.6/abc/0000100.jpg id10003/abc/00001.wav id10004/xyz/00001.wav\n",
    )
    _write(
        folder / "retrieval" / "wav_20k.csv",
        "VoxCeleb1 ID\twav\nid10003\tid10003/abc/00001.wav\nid10004\tid10004/xyz/00001.wav\n",
    )
    _write(
        folder / "retrieval" / "jpg_20k.csv",
        "VoxCeleb1 ID\tjpg\nid10003\tCarol_C/1.6/abc/0000100.jpg\nid10004\tDan_D/1.6/xyz/0000300.jpg\n"
        "id10004\tDan_D/1.6/xyz/0000301.jpg\n",
    )
    return folder


@pytest.fixture
def wen_dir(tmp_path) -> Path:
    return make_wen(tmp_path / "wen")


@pytest.fixture
def nagrani_dir(tmp_path) -> Path:
    return make_nagrani(tmp_path / "nagrani")


# ---------------------------------------------------------------------------
# Wen 2021
# ---------------------------------------------------------------------------


def test_wen_identities_skip_none_and_take_split_from_file_name(wen_dir):
    proto = read_wen2021(wen_dir)
    assert proto.name == "wen2021"
    assert sorted(proto.identities) == ["id10002", "id10003", "id10004", "id10005", "id10006"]
    assert proto.identities["id10006"] == Identity("id10006", "Eve_E", "f", "India", "test")
    assert proto.ids_in_split("train") == ("id10002",)
    assert proto.ids_in_split("val") == ("id10003", "id10004")
    assert proto.ids_in_split("test") == ("id10005", "id10006")


def test_wen_verification_labels_and_column_order(wen_dir):
    proto = read_wen2021(wen_dir)
    assert set(proto.verification) == {"verify_v2f_test", "verify_f2v_test"}
    v2f = proto.verification["verify_v2f_test"]
    assert len(v2f) == 3  # final line without newline counts
    assert v2f.labels.dtype == np.int8
    assert v2f.labels.tolist() == [1, 0, 1]
    assert v2f.voices[2] == "id10006/b/00001.wav" and v2f.faces[2] == "Eve_E/00000003.jpg"
    f2v = proto.verification["verify_f2v_test"]  # files are `jpg wav`: the query modality first
    assert f2v.voices.tolist() == ["id10005/a/00001.wav", "id10005/a/00002.wav"]
    assert f2v.faces.tolist() == ["Eve_E/00000003.jpg", "Dan_D/00000001.jpg"]
    assert f2v.labels.tolist() == [0, 1]


def test_wen_matching(wen_dir):
    m = read_wen2021(wen_dir).matching["match_v2f_2_val"]
    assert isinstance(m, MatchingList) and m.direction == "v2f" and len(m) == 2
    assert m.queries.tolist() == ["id10003/x/00001.wav", "id10004/y/00001.wav"]
    assert m.positives.tolist() == ["Bob_B/00000001.jpg", "Carol_C/00000003.jpg"]
    assert m.negatives.tolist() == ["Carol_C/00000002.jpg", "Bob_B/00000004.jpg"]


def test_wen_misspelled_retrieval_files_in_both_line_orders(wen_dir):
    proto = read_wen2021(wen_dir)
    assert set(proto.retrieval) == {"reterival_v2f_test", "reterival_f2v_test"}
    for lst in proto.retrieval.values():
        assert isinstance(lst, RetrievalList)
        assert lst.voices.tolist() == ["id10005/a/00001.wav", "id10005/a/00002.wav", "id10006/b/00001.wav"]
        assert lst.voice_identities.tolist() == ["id10005", "id10005", "id10006"]
        assert len(lst.faces) == 4  # trailing space adds no empty path
        assert lst.face_identities.tolist() == ["id10005", "id10006", "id10006", "id10006"]


def test_identity_helpers(wen_dir):
    proto = read_wen2021(wen_dir)
    assert proto.identity_of_voice("id10005/59-3D0HIDAc/00001.wav") == "id10005"
    assert proto.identity_of_face(Path("Eve_E") / "00000657.jpg") == "id10006"
    with pytest.raises(ProtocolError, match="Nobody"):
        proto.identity_of_face("Nobody/1.jpg")
    with pytest.raises(ValueError):
        proto.identity_of_voice("id10001/x/1.wav")  # a `none` identity is not in the protocol


def test_arrays_are_read_only(wen_dir):
    lst = read_wen2021(wen_dir).verification["verify_v2f_test"]
    with pytest.raises(ValueError):
        lst.labels[0] = 0
    with pytest.raises(ValueError):
        lst.voices[0] = "x"


def test_wen_only_existing_files_are_read(tmp_path):
    folder = tmp_path / "w"
    _write(folder / "vox1_test.csv", HEADER + "id10005,Dan_D,m,USA,dev\r\n")
    proto = read_wen2021(folder)
    assert list(proto.identities) == ["id10005"]
    assert proto.verification == {} and proto.matching == {} and proto.retrieval == {}


def test_wen_missing_folder_or_identity_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_wen2021(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="vox1_train.csv"):
        read_wen2021(tmp_path / "empty")


def test_wen_unknown_identity_names_file_line_and_path(wen_dir):
    _write(
        wen_dir / "verify_v2f_test.txt",
        "id10005/a/00001.wav Dan_D/00000001.jpg\nid10005/a/00001.wav Stranger/00000009.jpg\n",
    )
    with pytest.raises(ValueError, match=r"verify_v2f_test\.txt:2:.*'Stranger/00000009\.jpg'"):
        read_wen2021(wen_dir)


def test_wen_list_referencing_a_none_identity_is_rejected(wen_dir):
    _write(wen_dir / "match_v2f_2_val.txt", "id10007/q/00001.wav Skip_Me/1.jpg Bob_B/2.jpg\n")
    with pytest.raises(ProtocolError, match=r"match_v2f_2_val\.txt:1:.*id10007"):
        read_wen2021(wen_dir)


def test_wen_wrong_column_count(wen_dir):
    _write(
        wen_dir / "match_v2f_2_val.txt",
        "id10003/x/00001.wav Bob_B/1.jpg Carol_C/2.jpg\n\nid10003/x/00001.wav Bob_B/1.jpg\n",
    )
    with pytest.raises(ValueError, match=r"match_v2f_2_val\.txt:3: expected 3 fields.*got 2"):
        read_wen2021(wen_dir)


def test_wen_bad_csv_row(wen_dir):
    _write(wen_dir / "vox1_val.csv", HEADER + "id10003,Bob_B,m,UK,dev\r\nid10004,Carol_C,f\r\n")
    with pytest.raises(ProtocolError, match=r"vox1_val\.csv:3: expected 5"):
        read_wen2021(wen_dir)
    _write(wen_dir / "vox1_val.csv", "id,name\r\nid10003,Bob_B\r\n")
    with pytest.raises(ProtocolError, match=r"vox1_val\.csv:1: header lacks"):
        read_wen2021(wen_dir)


def test_wen_duplicate_identity_across_files(wen_dir):
    _write(wen_dir / "vox1_val.csv", HEADER + "id10002,Alice_A,f,USA,dev\r\n")
    with pytest.raises(ProtocolError, match="id10002 is listed twice"):
        read_wen2021(wen_dir)


def test_wen_retrieval_must_have_two_lines(wen_dir):
    _write(wen_dir / "reterival_v2f_test.txt", "id10005/a/00001.wav\nDan_D/1.jpg\nDan_D/2.jpg\n")
    with pytest.raises(ProtocolError, match=r"reterival_v2f_test\.txt: .*exactly 2"):
        read_wen2021(wen_dir)


def test_wen_retrieval_lines_in_wrong_order_are_caught(wen_dir):
    _write(wen_dir / "reterival_v2f_test.txt", "Dan_D/1.jpg Eve_E/2.jpg\nid10005/a/00001.wav\n")
    with pytest.raises(ProtocolError, match=r"reterival_v2f_test\.txt:1: expected a voice path"):
        read_wen2021(wen_dir)


def test_wen_matching_with_wrong_candidate_first(wen_dir):
    _write(wen_dir / "match_v2f_2_val.txt", "id10003/x/00001.wav Carol_C/2.jpg Bob_B/1.jpg\n")
    with pytest.raises(ProtocolError, match=r"match_v2f_2_val\.txt:1: first \(correct\) candidate"):
        read_wen2021(wen_dir)


def test_wen_swapped_verification_columns(wen_dir):
    _write(wen_dir / "verify_v2f_test.txt", "Dan_D/00000001.jpg id10005/a/00001.wav\n")
    with pytest.raises(ProtocolError, match=r"verify_v2f_test\.txt:1: expected a voice path"):
        read_wen2021(wen_dir)


def test_wen_list_name_without_direction(wen_dir):
    _write(wen_dir / "verify_extra_test.txt", "id10005/a/00001.wav Dan_D/00000001.jpg\n")
    with pytest.raises(ProtocolError, match="direction"):
        read_wen2021(wen_dir)


# ---------------------------------------------------------------------------
# Nagrani 2018
# ---------------------------------------------------------------------------


def test_nagrani_identities_and_splits(nagrani_dir):
    proto = read_nagrani2018(nagrani_dir)
    assert proto.name == "nagrani2018"
    assert proto.identities["id10003"] == Identity("id10003", "Carol_C", "f", "USA", "unseen_unheard")
    assert proto.ids_in_split("train") == ("id10001",)
    assert proto.ids_in_split("val") == ("id10002",)
    assert proto.ids_in_split("unseen_unheard") == ("id10003", "id10004")
    assert proto.identity_of_voice("Carol_C/abc_0000001.wav") == "id10003"  # veriflist style (name first)
    assert proto.identity_of_voice("id10003/abc/00001.wav") == "id10003"  # matching style (id first)


def test_nagrani_verification_uses_file_labels(nagrani_dir):
    lst = read_nagrani2018(nagrani_dir).verification["veriflist_test_random_unseenunheard"]
    assert len(lst) == 3
    assert lst.labels.tolist() == [1, 0, 1] and lst.labels.dtype == np.int8
    assert lst.voices[1] == "Carol_C/abc_0000002.wav" and lst.faces[1] == "Dan_D/xyz/0000200.jpg"


def test_nagrani_label_contradicting_paths(nagrani_dir):
    path = nagrani_dir / "veriflist" / "veriflist_test_random_unseenunheard.txt"
    _write(path, path.read_text().replace("2,3,4,0,", "2,3,4,1,"))
    with pytest.raises(ProtocolError, match=r"veriflist_test_random_unseenunheard\.txt:3: label 1 contradicts"):
        read_nagrani2018(nagrani_dir)


def test_nagrani_veriflist_wrong_column_count(nagrani_dir):
    path = nagrani_dir / "veriflist" / "veriflist_test_G_unseenunheard.txt"
    _write(path, "id,voice-speaker-id,face-speaker-id,label,voice-path,face-path\n1,3,3,1,Carol_C/a_1.wav\n")
    with pytest.raises(ValueError, match=r"veriflist_test_G_unseenunheard\.txt:2: expected 6"):
        read_nagrani2018(nagrani_dir)


def test_nagrani_matching_both_directions(nagrani_dir):
    proto = read_nagrani2018(nagrani_dir)
    v2f, f2v = proto.matching["matching_v2f_U"], proto.matching["matching_f2v_U"]
    assert v2f.direction == "v2f" and len(v2f) == 2 and v2f.voices_are_queries
    assert v2f.positives[0] == "Carol_C/1.6/abc/0000100.jpg"
    assert f2v.direction == "f2v" and len(f2v) == 1 and not f2v.voices_are_queries
    assert f2v.queries[0] == "Carol_C/1.6/abc/0000100.jpg"
    assert f2v.positives[0] == "id10003/abc/00001.wav" and f2v.negatives[0] == "id10004/xyz/00001.wav"


def test_nagrani_matching_wrong_column_count(nagrani_dir):
    _write(nagrani_dir / "matching" / "matching_v2f_G.csv", "id10003/abc/00001.wav Carol_C/1.jpg Dan_D/1.jpg x\n")
    with pytest.raises(ProtocolError, match=r"matching_v2f_G\.csv:1: expected 3"):
        read_nagrani2018(nagrani_dir)


def test_nagrani_retrieval(nagrani_dir):
    lst = read_nagrani2018(nagrani_dir).retrieval["retrieval_20k"]
    assert lst.voices.tolist() == ["id10003/abc/00001.wav", "id10004/xyz/00001.wav"]
    assert lst.voice_identities.tolist() == ["id10003", "id10004"]
    assert len(lst.faces) == 3 and lst.face_identities.tolist() == ["id10003", "id10004", "id10004"]


def test_nagrani_retrieval_id_column_must_match_path(nagrani_dir):
    path = nagrani_dir / "retrieval" / "jpg_20k.csv"
    _write(path, path.read_text().replace("id10003\tCarol_C", "id10004\tCarol_C"))
    with pytest.raises(ProtocolError, match=r"jpg_20k\.csv:2: identity column says id10004"):
        read_nagrani2018(nagrani_dir)


def test_nagrani_retrieval_needs_both_halves(nagrani_dir):
    (nagrani_dir / "retrieval" / "jpg_20k.csv").unlink()
    with pytest.raises(ProtocolError, match="jpg_20k.csv is missing"):
        read_nagrani2018(nagrani_dir)


def test_nagrani_unknown_identity(nagrani_dir):
    _write(nagrani_dir / "matching" / "matching_v2f_N.csv", "id19999/a/1.wav Carol_C/1.jpg Dan_D/1.jpg\n")
    with pytest.raises(ProtocolError, match=r"matching_v2f_N\.csv:1: voice path 'id19999/a/1\.wav'"):
        read_nagrani2018(nagrani_dir)


def test_nagrani_split_file_problems(nagrani_dir):
    _write(nagrani_dir / "identity_splits.txt", "A.J._Buckley 1\nBob_B 7\n")
    with pytest.raises(ProtocolError, match=r"identity_splits\.txt:2: set must be"):
        read_nagrani2018(nagrani_dir)
    _write(nagrani_dir / "identity_splits.txt", "A.J._Buckley 1\nBob_B 2\nCarol_C 4\n")
    with pytest.raises(ProtocolError, match="Dan_D .* has no line"):
        read_nagrani2018(nagrani_dir)
    (nagrani_dir / "identity_splits.txt").unlink()
    with pytest.raises(FileNotFoundError, match="identity_splits.txt"):
        read_nagrani2018(nagrani_dir)


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------


def test_detect_and_dispatch(wen_dir, nagrani_dir, tmp_path):
    assert detect_protocol(wen_dir) == "wen2021"
    assert detect_protocol(nagrani_dir) == "nagrani2018"
    (tmp_path / "nothing").mkdir()
    assert detect_protocol(tmp_path / "nothing") is None
    assert detect_protocol(tmp_path / "absent") is None
    assert read_protocol("wen2021", wen_dir).name == "wen2021"
    assert read_protocol("nagrani2018", nagrani_dir).name == "nagrani2018"
    assert read_protocol("auto", nagrani_dir).name == "nagrani2018"
    with pytest.raises(ValueError, match="unknown protocol"):
        read_protocol("sl2023", wen_dir)
    _write(wen_dir / "vox1_meta.csv", "x\n")
    with pytest.raises(ProtocolError, match="both"):
        detect_protocol(wen_dir)


# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------


def _synthetic_lists():
    idents = [
        Identity("id00001", "Person_1", "f", "Nowhere", "train"),
        Identity("id00002", "Person_2", "m", "Nowhere", "val"),
        Identity("id00003", "Person_3", "m", "Elsewhere", "val"),
        Identity("id00004", "Person_4", "f", "Elsewhere", "test"),
        Identity("id00005", "Person_5", "m", "Nowhere", "test"),
    ]
    verif = [
        VerificationList(
            "verify_v2f_test",
            ["id00004/v1/00001.wav", "id00004/v1/00001.wav", "id00005/v9/00002.wav"],
            ["Person_4/00000001.jpg", "Person_5/00000002.jpg", "Person_5/00000003.jpg"],
            [1, 0, 1],
        ),
        VerificationList(
            "verify_f2v_test",
            ["id00005/v9/00002.wav", "id00004/v1/00003.wav"],
            ["Person_4/1.jpg", "Person_4/2.jpg"],
            [0, 1],
        ),
    ]
    match = [
        MatchingList("match_v2f_2_val", "v2f", ["id00002/a/1.wav"], ["Person_2/1.jpg"], ["Person_3/1.jpg"]),
        MatchingList("match_f2v_2_val", "f2v", ["Person_3/1.jpg"], ["id00003/b/1.wav"], ["id00002/a/1.wav"]),
    ]
    retr = [
        RetrievalList(
            name,
            ["id00004/v1/00001.wav", "id00005/v9/00002.wav"],
            ["Person_4/1.jpg", "Person_5/1.jpg", "Person_5/2.jpg"],
            ["id00004", "id00005"],
            ["id00004", "id00005", "id00005"],
        )
        for name in ("reterival_v2f_test", "reterival_f2v_test")
    ]
    return idents, verif, match, retr


def _assert_same_lists(a: Protocol, b: Protocol) -> None:
    assert a.identities == b.identities
    for kind, fields in (
        ("verification", ("voices", "faces", "labels")),
        ("matching", ("queries", "positives", "negatives")),
        ("retrieval", ("voices", "faces", "voice_identities", "face_identities")),
    ):
        da, db = getattr(a, kind), getattr(b, kind)
        assert sorted(da) == sorted(db)
        for name in da:
            for f in fields:
                np.testing.assert_array_equal(getattr(da[name], f), getattr(db[name], f), err_msg=f"{name}.{f}")


def test_write_read_round_trip(tmp_path):
    idents, verif, match, retr = _synthetic_lists()
    written = write_wen2021_lists(tmp_path / "p", idents, verification=verif, matching=match, retrieval=retr)
    assert {p.name for p in written} >= {"vox1_train.csv", "verify_f2v_test.txt", "reterival_f2v_test.txt"}
    # exactly the released formats
    assert (tmp_path / "p" / "vox1_val.csv").read_bytes().startswith(HEADER.encode())
    first_f2v = (tmp_path / "p" / "verify_f2v_test.txt").read_text().splitlines()[0]
    assert first_f2v == "Person_4/1.jpg id00005/v9/00002.wav"
    assert (tmp_path / "p" / "reterival_f2v_test.txt").read_text().splitlines()[0].startswith("Person_4/1.jpg ")
    back = read_wen2021(tmp_path / "p")
    expected = Protocol(
        "wen2021",
        {i.voice_id: i for i in idents},
        {v.name: v for v in verif},
        {m.name: m for m in match},
        {r.name: r for r in retr},
    )
    _assert_same_lists(back, expected)
    assert back.matching["match_f2v_2_val"].direction == "f2v"


def test_writer_refuses_what_the_format_cannot_hold(tmp_path):
    idents, verif, match, retr = _synthetic_lists()
    wrong_label = VerificationList("verify_v2f_test", ["id00004/a.wav"], ["Person_5/1.jpg"], [1])
    with pytest.raises(ProtocolError, match="label"):
        write_wen2021_lists(tmp_path / "a", idents, verification=[wrong_label])
    with pytest.raises(ProtocolError, match="list name"):
        write_wen2021_lists(tmp_path / "a", idents, verification=[VerificationList("my pairs", [], [], [])])
    spaced = VerificationList("verify_v2f_x", ["id00004/a b.wav"], ["Person_4/1.jpg"], [1])
    with pytest.raises(ProtocolError, match=r"verify_v2f_x:1: .*whitespace"):
        write_wen2021_lists(tmp_path / "a", idents, verification=[spaced])
    swapped = VerificationList("verify_v2f_x", ["Person_4/1.jpg"], ["id00004/a.wav"], [1])
    with pytest.raises(ProtocolError, match="expected a voice path"):
        write_wen2021_lists(tmp_path / "a", idents, verification=[swapped])
    with pytest.raises(ProtocolError, match="split"):
        write_wen2021_lists(tmp_path / "a", [Identity("id1", "N", "m", "X", "seen_heard")])
    inverted = MatchingList("match_v2f_2_val", "v2f", ["id00002/a.wav"], ["Person_3/1.jpg"], ["Person_2/1.jpg"])
    with pytest.raises(ProtocolError, match=r"first \(correct\)"):
        write_wen2021_lists(tmp_path / "a", idents, matching=[inverted])
    misnamed = MatchingList("match_f2v_2_val", "v2f", ["id00002/a.wav"], ["Person_2/1.jpg"], ["Person_3/1.jpg"])
    with pytest.raises(ProtocolError, match="the name says f2v"):
        write_wen2021_lists(tmp_path / "a", idents, matching=[misnamed])
    assert not (tmp_path / "a").exists()  # nothing written when validation fails
    write_wen2021_lists(tmp_path / "b", idents, retrieval=retr)
    with pytest.raises(FileExistsError):
        write_wen2021_lists(tmp_path / "b", idents, retrieval=retr)
    write_wen2021_lists(tmp_path / "b", idents, retrieval=retr, overwrite=True)


# ---------------------------------------------------------------------------
# the real protocol files (only where the shared data is present)
# ---------------------------------------------------------------------------

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real protocol files not present at {REAL}")


@pytest.fixture(scope="module")
def real_wen() -> Protocol:
    return read_wen2021(REAL / "wen2021")


@pytest.fixture(scope="module")
def real_nagrani() -> Protocol:
    return read_nagrani2018(REAL / "nagrani2018")


@needs_real
def test_real_wen(real_wen):
    counts = {s: len(real_wen.ids_in_split(s)) for s in ("train", "val", "test")}
    assert counts == {"train": 924, "val": 112, "test": 189}
    sizes = {k: len(v) for k, v in real_wen.verification.items()}
    assert sizes == {
        "verify_v2f_test": 65550,
        "verify_f2v_test": 60228,
        "verify_g_v2f_test": 65550,
        "verify_g_f2v_test": 60228,
    }
    for lst in real_wen.verification.values():
        assert 0 < lst.labels.sum() < len(lst)  # positives and negatives both present
    # match_v2f_2_val.txt ends without a newline: `wc -l` says 42545, there are 42546 triplets
    assert {k: len(v) for k, v in real_wen.matching.items()} == {"match_v2f_2_val": 42546, "match_g_v2f_2_val": 42540}
    assert set(real_wen.retrieval) == {"reterival_v2f_test", "reterival_f2v_test"}
    for lst in real_wen.retrieval.values():
        assert (len(lst.voices), len(lst.faces)) == (21850, 20076)
        assert set(lst.voice_identities) == set(lst.face_identities) == set(real_wen.ids_in_split("test"))
    a, b = real_wen.retrieval.values()
    np.testing.assert_array_equal(a.voices, b.voices)  # same gallery, the two files only swap the lines
    assert real_wen.identity_of_face("CCH_Pounder/00000657.jpg") == "id10117"


@needs_real
def test_real_nagrani(real_nagrani):
    counts = {s: len(real_nagrani.ids_in_split(s)) for s in ("train", "val", "seen_heard", "unseen_unheard")}
    assert counts == {"train": 901, "val": 100, "seen_heard": 0, "unseen_unheard": 250}
    assert len(real_nagrani.verification) == 10
    assert len(real_nagrani.verification["veriflist_test_random_unseenunheard"]) == 30496
    assert len(real_nagrani.verification["veriflist_test_random_seenheard"]) == 18020
    for lst in real_nagrani.verification.values():
        assert 0 < lst.labels.sum() < len(lst)
    assert len(real_nagrani.matching) == 8
    assert len(real_nagrani.matching["matching_v2f_U"]) == 10000
    assert len(real_nagrani.matching["matching_f2v_GN"]) == 9120
    for lst in real_nagrani.matching.values():
        assert len(lst) > 0
    r = real_nagrani.retrieval["retrieval_20k"]
    assert (len(r.voices), len(r.faces)) == (20000, 20000)
    assert set(r.voice_identities) == set(real_nagrani.ids_in_split("unseen_unheard"))
    assert real_nagrani.identities["id10001"].face_id == "A.J._Buckley"


@needs_real
def test_real_protocols_detect_and_read_fast():
    for name in ("wen2021", "nagrani2018"):
        assert detect_protocol(REAL / name) == name
        start = time.perf_counter()
        read_protocol(name, REAL / name)
        assert time.perf_counter() - start < 6.0  # budget is < 3 s; slack for loaded CI machines


@needs_real
def test_real_wen_round_trips_through_the_writer(real_wen, tmp_path):
    write_wen2021_lists(
        tmp_path,
        real_wen.identities,
        verification=real_wen.verification,
        matching=real_wen.matching,
        retrieval=real_wen.retrieval,
    )
    _assert_same_lists(read_wen2021(tmp_path), real_wen)


# ---------------------------------------------------------------------------
# the direction of a list: one field, read from the name in one place
# ---------------------------------------------------------------------------


def test_direction_is_a_field_of_every_list():
    from faa_core.protocols import DIRECTIONS, direction_from_name

    v = VerificationList("verify_f2v_test", ["id1/a.wav"], ["N/b.jpg"], [1])
    assert v.direction == "f2v"
    assert VerificationList("veriflist_test_G_unseenunheard", ["id1/a.wav"], ["N/b.jpg"], [1]).direction is None
    r = RetrievalList("reterival_v2f_sl_test_3", ["id1/a.wav"], ["N/b.jpg"], ["id1"], ["id1"])
    assert (r.direction, r.directions) == ("v2f", ("v2f",))
    both = RetrievalList("retrieval_20k", ["id1/a.wav"], ["N/b.jpg"], ["id1"], ["id1"])
    assert (both.direction, both.directions) == (None, DIRECTIONS)
    assert RetrievalList("custom", ["a.wav"], ["b.jpg"], ["i"], ["i"], direction="f2v").directions == ("f2v",)
    assert [direction_from_name(n) for n in ("match_g_v2f_2_val", "sl_match_f2v_g_test", "retrieval_v2fx", "x")] == [
        "v2f", "f2v", None, None]
    with pytest.raises(ProtocolError, match="both v2f and f2v"):
        direction_from_name("verify_v2f_f2v")
    with pytest.raises(ValueError, match="direction must be 'v2f' or 'f2v', got 'up'"):
        VerificationList("verify_v2f_x", ["a.wav"], ["b.jpg"], [1], direction="up")


def test_readers_set_the_direction_and_evaluation_follows_it(tmp_path):
    """Retrieval lists are scored in the directions the list object says, not by a substring of the key."""
    from faa_core.protocols import Identity, write_wen2021_lists

    ids = [Identity("id1", "A_B", "m", "X", "test"), Identity("id2", "C_D", "f", "X", "test")]
    voices, faces = ["id1/v/1.wav", "id2/v/1.wav"], ["A_B/1.jpg", "C_D/1.jpg"]
    write_wen2021_lists(
        tmp_path, ids,
        verification=[VerificationList("verify_f2v_test", voices, faces, [1, 1])],
        retrieval=[RetrievalList("reterival_f2v_test", voices, faces, ["id1", "id2"], ["id1", "id2"])],
    )
    assert (tmp_path / "verify_f2v_test.txt").read_text().split("\n")[0] == "A_B/1.jpg id1/v/1.wav"
    proto = read_wen2021(tmp_path)
    assert proto.verification["verify_f2v_test"].direction == "f2v"
    assert proto.retrieval["reterival_f2v_test"].directions == ("f2v",)
    with pytest.raises(ProtocolError, match="the name says v2f but the list's direction is f2v"):
        write_wen2021_lists(tmp_path / "b", ids, verification=[
            VerificationList("verify_v2f_test", voices, faces, [1, 1], direction="f2v")])
