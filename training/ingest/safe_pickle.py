"""Reading pickles from elsewhere without running their code.

A pickle is a program: its GLOBAL / REDUCE opcodes can call any importable
function (``os.system``, ``builtins.eval``, ``subprocess.Popen``) while it is
being loaded. Feature files downloaded from a paper's release (Self-Lifting's
``face_input.pkl`` and friends) hold only data, so :func:`safe_load` allows
only the globals that plain data needs and refuses every other one *before*
it is called, with :class:`UnsafePickleError` naming the file and the global.

What a pickle may contain:

* containers and scalars the pickle format builds without globals (dict, list,
  tuple, str, bytes, int, float, bool, None) plus ``set``, ``frozenset``,
  ``bytearray``, ``complex``, ``collections.OrderedDict`` and
  ``collections.defaultdict`` (with list/dict/set/... as factory), which
  older protocols rebuild through a global;
* numpy arrays and numpy scalars: ``numpy.dtype``, ``numpy.ndarray`` (only as
  the array type handed to ``_reconstruct``, never called directly), and the
  rebuild helpers ``_reconstruct`` / ``scalar`` / ``_frombuffer`` under both
  their numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) module names;
* ``_codecs.encode(text, "latin1")``, which protocols 0-2 use to store bytes
  (array data); any other encoding is refused.

Python 2 module names (``__builtin__``, which protocols 0-2 also use) are
mapped to their Python 3 names first, as ``pickle`` itself does; Python 2 byte
strings are decoded as latin-1, as numpy recommends for arrays.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PickleReadError", "UnsafePickleError", "RestrictedUnpickler", "safe_load", "safe_loads", "ALLOWED"]

ALLOWED_TEXT = "only containers, strings, numbers and numpy arrays are allowed"


class PickleReadError(ValueError):
    """A pickle could not be read (truncated, corrupt, or refused); the message names the file."""


class UnsafePickleError(PickleReadError, pickle.UnpicklingError):
    """A pickle asked for a global outside the data-only allow-list; nothing of it was called."""


def _numpy_attr(name: str) -> Any:
    """A numpy rebuild helper under its numpy 2 home, falling back to the numpy 1 one."""
    for module in ("numpy._core.multiarray", "numpy._core.numeric", "numpy.core.multiarray", "numpy.core.numeric"):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise ImportError(f"numpy has no {name}")  # pragma: no cover - every supported numpy has them


class _Sealed:
    """Base of the objects handed to the pickle machinery: a BUILD opcode cannot set attributes on them."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"a pickle tried to set state on {self!r}; {ALLOWED_TEXT}")


class _ArrayType(_Sealed):
    """Stands for ``numpy.ndarray`` in a pickle: accepted as ``_reconstruct``'s subtype, never called."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


class _Call(_Sealed):
    """A rebuild helper as the pickle sees it: callable, but its function cannot be reached or changed."""

    __slots__ = ("_fn", "_label")

    def __init__(self, fn: Any, label: str) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_label", label)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafePickleError(f"a pickle tried to set {key} on {self._label}; {ALLOWED_TEXT}")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __repr__(self) -> str:
        return self._label


_ARRAY_TYPE = _ArrayType()
_np_reconstruct = _numpy_attr("_reconstruct")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array rebuild step, restricted to plain ndarrays (no subclasses from the pickle)."""
    if subtype is not _ARRAY_TYPE:
        raise UnsafePickleError(f"_reconstruct may only build numpy.ndarray, got {subtype!r}")
    return _np_reconstruct(np.ndarray, shape, dtype)


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it for bytes: ``encode(str, "latin1")`` only."""
    ok = isinstance(text, str) and isinstance(encoding, str) and encoding.lower().replace("_", "-") in ("latin1", "latin-1")
    if not ok or errors != "strict":
        raise UnsafePickleError(f"_codecs.encode is only allowed as encode(str, 'latin1'), got encoding {encoding!r}")
    return _codecs.encode(text, "latin1")


_RECONSTRUCT = _Call(_reconstruct, "numpy _reconstruct")
_SCALAR = _Call(_numpy_attr("scalar"), "numpy scalar")
_FROMBUFFER = _Call(_numpy_attr("_frombuffer"), "numpy _frombuffer")


#: (module, name) -> the object handed to the pickle machinery.
ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("_codecs", "encode"): _Call(_latin1_encode, "_codecs.encode"),
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): _ARRAY_TYPE,
}
for _core in ("numpy.core", "numpy._core"):
    ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _RECONSTRUCT
    ALLOWED[(f"{_core}.multiarray", "scalar")] = _SCALAR
    ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _FROMBUFFER

class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` only resolves names in :data:`ALLOWED`."""

    def __init__(self, file: Any, name: str = "<pickle>") -> None:
        super().__init__(file, encoding="latin1")
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        # protocols 0-2 name Python 2 modules (__builtin__, commands); map them as pickle's own find_class does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self.name} wants {module}.{name}; {ALLOWED_TEXT}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.name} uses a persistent id ({pid!r}); {ALLOWED_TEXT}")


def _load(fh: Any, name: str) -> Any:
    try:
        return RestrictedUnpickler(fh, name).load()
    except UnsafePickleError as exc:
        text = str(exc)
        raise UnsafePickleError(text if text.startswith(name) else f"{name}: {text}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError) as exc:
        raise PickleReadError(f"{name}: not a readable data pickle ({type(exc).__name__}: {exc})") from None


def safe_load(path: str | os.PathLike[str], name: str | None = None) -> Any:
    """Load a data pickle from ``path`` (``name``, default the file name, is used in errors)."""
    path = Path(path)
    label = name or path.name
    if not path.is_file():
        raise FileNotFoundError(f"{label}: file not found ({path})")
    with open(path, "rb") as fh:
        return _load(fh, label)


def safe_loads(data: bytes, name: str = "<bytes>") -> Any:
    """Load a data pickle from bytes (see :func:`safe_load`)."""
    return _load(io.BytesIO(data), name)
