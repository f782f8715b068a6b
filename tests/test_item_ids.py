"""training.eval.item_ids: list paths in the first VoxCeleb1 release's forms find the current items."""

import numpy as np
import pytest

from faa_core.protocols import Identity, Protocol
from training.features import ItemTable
from training.eval.item_ids import LegacyIdSource

PROTO = Protocol("nagrani2018", {"id10001": Identity("id10001", "A.J._Buckley", "m", "USA", "train")})


def test_old_and_current_paths_both_resolve():
    voice = ItemTable(["id10001/Y8hIVOBuels/00001.wav", "id10001/Y8hIVOBuels/00012.wav"],
                      ["v", "v"], ["id10001", "id10001"], ["test", "test"])
    face = ItemTable(["A.J._Buckley/1.6/Y8hIVOBuels/0005175.jpg"], ["v"], ["id10001"], ["test"])
    v, f = LegacyIdSource(voice, "voice", PROTO), LegacyIdSource(face, "face", PROTO)
    assert v.index(["A.J._Buckley/Y8hIVOBuels_0000012.wav", "id10001/Y8hIVOBuels/00001.wav"]).tolist() == [1, 0]
    assert f.index(["A.J._Buckley/Y8hIVOBuels/0005175.jpg"]).tolist() == [0]
    assert v.splits.tolist() == ["test", "test"]  # everything else is the wrapped source's
    with pytest.raises(KeyError, match="first VoxCeleb1 release"):
        v.index(["A.J._Buckley/Y8hIVOBuels_0000099.wav"])


def test_current_paths_skip_the_alias_table():
    voice = ItemTable(["id10001/a/00001.wav"], ["v"], ["id10001"], ["test"])
    v = LegacyIdSource(voice, "voice", PROTO)
    assert v.index(np.array(["id10001/a/00001.wav"])).tolist() == [0]
    assert v._aliases is None
