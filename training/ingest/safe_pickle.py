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

What a pickle may build is bounded too (:class:`PickleTooLargeError`), since a
few kB of memo references can describe 10^8 values that any consumer
(``np.asarray``, a loop) expands:

* allocations made while loading (``bytearray(n)``, arrays from
  ``_reconstruct``) stay within :data:`ALLOC_FLOOR` plus
  :data:`ALLOC_PER_BYTE` bytes per byte of pickle;
* the loaded object, counted as a consumer expands it (a shared part counts
  every time it is reached), holds at most :data:`ELEMENT_FLOOR` plus
  :data:`ELEMENTS_PER_BYTE` elements per byte of pickle (real data stays
  below 1 per byte: a float32 takes 4 bytes, a memo reference 2-5), nested at
  most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PickleReadError", "UnsafePickleError", "PickleTooLargeError", "RestrictedUnpickler", "safe_load",
           "safe_loads", "ALLOWED"]

#: Elements a pickle may expand to: this many, plus ELEMENTS_PER_BYTE per byte of the pickle.
ELEMENT_FLOOR = 1_000_000
ELEMENTS_PER_BYTE = 4
#: Bytes that loading may allocate: this many, plus ALLOC_PER_BYTE per byte of the pickle.
ALLOC_FLOOR = 64 * 2**20
ALLOC_PER_BYTE = 4
#: Deepest nesting of containers in a loaded pickle.
MAX_DEPTH = 64

ALLOWED_TEXT = "only containers, strings, numbers and numpy arrays are allowed"


class PickleReadError(ValueError):
    """A pickle could not be read (truncated, corrupt, or refused); the message names the file."""


class UnsafePickleError(PickleReadError, pickle.UnpicklingError):
    """A pickle asked for a global outside the data-only allow-list; nothing of it was called."""


class PickleTooLargeError(PickleReadError):
    """A pickle expands to far more than its size can hold as data (a "billion laughs"), or nests too deep."""


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


#: Bytes the current load may still allocate (set per load by ``_load``; one load per thread at a time).
_budget = threading.local()


def _spend(nbytes: int, what: str) -> None:
    left = getattr(_budget, "left", None)
    if left is None:
        return
    if nbytes > left:
        raise PickleTooLargeError(f"the pickle asks for {what} ({nbytes:,} bytes), more than its size allows")
    _budget.left = left - nbytes


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array rebuild step, restricted to plain ndarrays (no subclasses from the pickle)."""
    if subtype is not _ARRAY_TYPE:
        raise UnsafePickleError(f"_reconstruct may only build numpy.ndarray, got {subtype!r}")
    try:
        n = int(np.prod([int(d) for d in np.atleast_1d(shape)], dtype=object)) * int(np.dtype(dtype).itemsize)
    except (TypeError, ValueError):
        n = 0  # numpy itself refuses what cannot be a shape or dtype
    _spend(n, "an array")
    return _np_reconstruct(np.ndarray, shape, dtype)


def _bytearray(*args: Any) -> bytearray:
    """``bytearray`` as a pickle may call it: ``bytearray(n)`` allocates n bytes, so n is bounded."""
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        _spend(int(args[0]), "a bytearray")
    return bytearray(*args)


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
    ("builtins", "bytearray"): _Call(_bytearray, "bytearray"),
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


_CONTAINERS = (np.ndarray, dict, list, tuple, set, frozenset)


def _check_expansion(obj: Any, limit: int, name: str) -> None:
    """Count ``obj`` as a consumer would expand it (shared parts every time), up to ``limit`` elements."""
    count = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PickleTooLargeError(f"{name}: nests deeper than {MAX_DEPTH} levels; not plain data")
        if isinstance(item, np.ndarray):
            count += item.size
            children = item.ravel() if item.dtype == object else ()
        elif isinstance(item, dict):
            count += len(item)
            children = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            count += len(item)
            children = item
        else:
            count += 1
            children = ()
        if count > limit:
            raise PickleTooLargeError(
                f"{name}: expands to more than {limit:,} values (shared references repeated), far more than "
                "its size can hold as data; refused as a pickle bomb"
            )
        stack.extend((c, depth + 1) for c in children if isinstance(c, _CONTAINERS))


def _load(fh: Any, name: str, size: int) -> Any:
    _budget.left = ALLOC_FLOOR + ALLOC_PER_BYTE * size
    try:
        obj = RestrictedUnpickler(fh, name).load()
        _check_expansion(obj, ELEMENT_FLOOR + ELEMENTS_PER_BYTE * size, name)
        return obj
    except PickleTooLargeError as exc:
        text = str(exc)
        raise PickleTooLargeError(text if text.startswith(name) else f"{name}: {text}") from None
    except UnsafePickleError as exc:
        text = str(exc)
        raise UnsafePickleError(text if text.startswith(name) else f"{name}: {text}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError, RecursionError) as exc:
        raise PickleReadError(f"{name}: not a readable data pickle ({type(exc).__name__}: {exc})") from None
    finally:
        _budget.left = None


def safe_load(path: str | os.PathLike[str], name: str | None = None) -> Any:
    """Load a data pickle from ``path`` (``name``, default the file name, is used in errors)."""
    path = Path(path)
    label = name or path.name
    if not path.is_file():
        raise FileNotFoundError(f"{label}: file not found ({path})")
    with open(path, "rb") as fh:
        return _load(fh, label, path.stat().st_size)


def safe_loads(data: bytes, name: str = "<bytes>") -> Any:
    """Load a data pickle from bytes (see :func:`safe_load`)."""
    return _load(io.BytesIO(data), name, len(data))
