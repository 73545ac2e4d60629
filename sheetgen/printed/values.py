"""Arrays whose leading axes are named by an index (`i`, `n`, `k`): how `\\sum_i a_i b_i` lines axes up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EvalError", "LArr", "align", "as_larr", "to_float"]


class EvalError(ValueError):
    """The printed formula cannot be evaluated on these inputs (shapes, an unknown function, ...)."""


def to_float(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "biuf":
        return array.astype(float)
    return array


@dataclass(frozen=True)
class LArr:
    arr: np.ndarray
    labels: tuple[str, ...] = ()

    @property
    def data_ndim(self) -> int:
        return self.arr.ndim - len(self.labels)

    def size_of(self, label: str) -> int:
        return int(self.arr.shape[self.labels.index(label)])

    def reduce(self, label: str, how: str) -> LArr:
        axis = self.labels.index(label)
        if how not in ("sum", "prod", "max", "min"):
            raise EvalError(f"cannot reduce with {how}")
        func = getattr(np, how)
        return LArr(np.asarray(func(self.arr, axis=axis)), self.labels[:axis] + self.labels[axis + 1:])

    def order(self, labels: tuple[str, ...]) -> np.ndarray:
        """The array with exactly `labels` leading (missing ones as size-1 axes)."""
        extra = [lab for lab in self.labels if lab not in labels]
        if extra:
            raise EvalError(f"index {', '.join(extra)} is not summed or bound")
        arr = self.arr
        present = [lab for lab in labels if lab in self.labels]
        perm = [self.labels.index(lab) for lab in present] + list(range(len(self.labels), arr.ndim))
        arr = np.transpose(arr, perm)
        shape = list(arr.shape)
        for pos, lab in enumerate(labels):
            if lab not in self.labels:
                shape.insert(pos, 1)
        return arr.reshape(shape)


def as_larr(value: Any) -> LArr:
    if isinstance(value, LArr):
        return value
    return LArr(to_float(value))


def align(*values: LArr, pad_data: bool = True) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
    """Arrays with the union of the labels leading (in first-seen order), data axes right-aligned."""
    labels: list[str] = []
    for value in values:
        labels.extend(lab for lab in value.labels if lab not in labels)
    union = tuple(labels)
    data = max(v.data_ndim for v in values)
    out = []
    for value in values:
        arr = value.order(union)
        if pad_data and value.data_ndim < data:
            arr = arr.reshape(arr.shape[:len(union)] + (1,) * (data - value.data_ndim) + arr.shape[len(union):])
        out.append(arr)
    return tuple(out), union
