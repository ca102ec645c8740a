"""Read weight files through a restricted unpickler: an allow-list of globals, nothing else.

A pickle names the functions it calls when loaded; a weights file only needs the ones that rebuild
arrays. Everything else is refused by name *before* it is looked up, so a hostile file runs nothing.
Allowed (and why):
  torch._utils._rebuild_tensor_v2 / _rebuild_parameter   tensors in torch's zip format (.pth)
  numpy ndarray, dtype, _reconstruct, scalar              numpy arrays and scalars, protocols 0-4
  numpy _frombuffer                                       numpy arrays, protocol 5
  _codecs.encode (latin-1 text only)                      `bytes` written with protocol <= 2
  collections.OrderedDict, builtins dict/list/tuple/set/frozenset   plain containers
numpy 1 writes `numpy.core.*`, numpy 2 `numpy._core.*`: both names are accepted and resolved to the
installed module. torch storages in the zip format are resolved by torch itself (storage types only).
"""
from __future__ import annotations

import codecs
import collections
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle calls a global outside the allow-list."""


def _latin1_encode(text, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol-2 pickles of `bytes` use it: str -> bytes with latin-1, nothing else."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r} (only latin-1 text is allowed)")
    return text.encode("latin-1", errors)


def _numpy_core(name: str):
    from numpy._core import multiarray, numeric

    return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar,
            "_frombuffer": numeric._frombuffer}[name]


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "tuple"): tuple,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,  # Python 2 pickles
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name in ("_reconstruct", "scalar"):
        ALLOWED[(_module, _name)] = _name
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED[(_module, "_frombuffer")] = "_frombuffer"


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the allow-listed globals. Persistent ids (torch storages)
    are resolved only where torch's loader sets `persistent_load`; a plain pickle has none."""

    def find_class(self, module: str, name: str):
        found = ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(f"refusing to load {module}.{name}: not on the allow-list of a weights file "
                                    "(tensors, numpy arrays, plain containers)")
        return _numpy_core(found) if isinstance(found, str) else found


class _PickleModule:
    """What `torch.load(pickle_module=...)` needs: our Unpickler and a `load`."""

    Unpickler = RestrictedUnpickler
    __name__ = "pipeline.detection.safe_pickle"

    @staticmethod
    def load(file: IO[bytes], **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()


def load_pickle(file: IO[bytes]):
    """A plain pickle (any protocol; Python 2 pickles decode 8-bit strings as latin-1)."""
    return RestrictedUnpickler(file, encoding="latin1").load()


def load_torch(path: str | Path):
    """A torch file (zip or legacy format) whose pickle goes through the allow-list, on the CPU.

    torch's own `weights_only` loader refuses numpy arrays; this one accepts them and nothing more."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule,
                      encoding="latin1")


# torch's pre-1.6 format starts with its magic number pickled with protocol 2.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


def load_weights_file(path: str | Path):
    """A torch file if it is one (zip archive or torch's legacy magic number), else a plain pickle."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
        if head.startswith(b"PK\x03\x04") or head == _LEGACY_TORCH_MAGIC:
            return load_torch(path)
        f.seek(0)
        return load_pickle(f)
