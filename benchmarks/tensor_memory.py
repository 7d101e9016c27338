"""Peak memory held by live tensors during a call, counted exactly (independent of malloc and RSS noise).

A ``TorchDispatchMode`` sees every tensor an operator returns; each new storage is counted until Python frees it
(a weak-reference finaliser on the storage). Works on any device; used by benchmarks to compare the memory two
models need for the same computation (RSS peaks move by +-5 % with heap fragmentation, this does not).
"""

import weakref
from typing import Any, Callable, Dict, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemoryPeak(TorchDispatchMode):
    """Context manager: ``peak`` (bytes) of storages created inside it and alive at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: Dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Tuple = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # An output that shares an input's storage (a view, ``detach``, an in-place op) allocated nothing: a
        # parameter detached inside the call is not new memory (counting it once added the parameter's size).
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._live and key not in inputs:
                    self._live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    try:
                        weakref.finalize(storage, self._free, key)
                    except TypeError:  # a storage type without weak references: counted until the end
                        pass
        return out


def peak_tensor_mib(fn: Callable[[], Any]) -> float:
    """MiB of the largest set of tensors alive at once while ``fn()`` runs (created inside it)."""
    with TensorMemoryPeak() as tracker:
        fn()
    return tracker.peak / 2 ** 20
