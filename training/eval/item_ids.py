"""Protocol list paths -> feature items, accepting the first VoxCeleb1 release's path forms.

Stores made by ``training.ingest.prepare``/``training.ingest.extract`` name items as the
current release does (``id10001/<video>/00001.wav``, face-track frames
``Name/1.6/<video>/<frame>.jpg``), but Nagrani et al.'s verification lists use
the first release's forms (``Name/<video>_0000001.wav``, frames without the
``1.6/`` folder). :class:`LegacyIdSource` wraps a feature source so that its
``index`` also finds items by those forms; everything else is the source's.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from faa_core.protocols import Protocol

from training.ingest.media_index import legacy_face_path, legacy_voice_path


class LegacyIdSource:
    """A feature source whose ``index`` also accepts the old path forms of its items."""

    def __init__(self, source: Any, modality: str, protocol: Protocol) -> None:
        self._source, self._modality, self._protocol = source, modality, protocol
        self._aliases: dict[str, int] | None = None

    def __getattr__(self, name: str) -> Any:  # everything but index comes from the wrapped source
        return getattr(self._source, name)

    def _alias_table(self) -> dict[str, int]:
        if self._aliases is None:
            names = {vid: ident.face_id for vid, ident in self._protocol.identities.items()}
            table: dict[str, int] = {}
            for k, (item, identity) in enumerate(zip(self._source.ids.tolist(), np.asarray(self._source.identities).tolist())):
                if self._modality == "voice":
                    old = legacy_voice_path(item, names[identity]) if identity in names else None
                else:
                    old = legacy_face_path(item)
                if old is not None:
                    table[old] = k
            self._aliases = table
        return self._aliases

    def index(self, ids: Iterable[str]) -> np.ndarray:
        wanted = [ids] if isinstance(ids, str) else [str(i) for i in ids]
        try:
            return self._source.index(wanted)
        except KeyError:
            pass
        current = {s: k for k, s in enumerate(self._source.ids.tolist())}
        aliases = self._alias_table()
        out = np.empty(len(wanted), dtype=np.int64)
        missing = []
        for j, s in enumerate(wanted):
            k = current.get(s, aliases.get(s))
            if k is None:
                missing.append(s)
            else:
                out[j] = k
        if missing:
            raise KeyError(f"{len(missing)} {self._modality} paths of the lists are not in the features "
                           f"(also tried the first VoxCeleb1 release's path forms), e.g. {missing[:3]}")
        return out
