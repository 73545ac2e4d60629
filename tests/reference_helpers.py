"""What every reference-test file shares: the registry decorator, the torch marker and the tolerance.

The registry is read statically (by parsing the test files), so the "every formula has a reference test"
check holds under pytest-xdist, where one worker imports only some of the test files.
"""

from __future__ import annotations

import ast
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from numpy.testing import assert_allclose

try:
    import torch
except ImportError:  # the torch-free tests still run
    torch = None  # type: ignore[assignment]

Test = TypeVar("Test", bound=Callable[..., Any])

TESTS_DIR = Path(__file__).resolve().parent
REFERENCE_FILES = "test_reference*.py"
close = partial(assert_allclose, rtol=1e-9, atol=1e-12)


def reference(*formula_ids: str) -> Callable[[Test], Test]:
    """Mark a test as a reference test of the given formula ids (= generated function names).

    A no-op at run time: `registered_reference_ids` finds the decorators by parsing the files.
    """

    def register(test: Test) -> Test:
        return test

    return register


def registered_reference_ids() -> dict[str, list[str]]:
    """formula id → names of the tests decorated with `@reference(id, ...)`, in every test_reference*.py."""
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS_DIR.glob(REFERENCE_FILES)):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Name)
                        and decorator.func.id == "reference"):
                    for arg in decorator.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            found.setdefault(arg.value, []).append(f"{path.name}::{node.name}")
    return found


def torch_test(test: Test) -> Test:
    """Mark a test as a live PyTorch comparison; skipped cleanly where torch is not installed."""
    test = pytest.mark.skipif(torch is None, reason="torch is not installed")(test)
    return pytest.mark.torch(test)  # type: ignore[no-any-return]


def t64(a: Any) -> Any:
    return torch.tensor(np.asarray(a, dtype=float), dtype=torch.float64)


def to_np(x: Any) -> np.ndarray:
    return x.detach().numpy()  # type: ignore[no-any-return]


def rng_for(*key: object) -> np.random.Generator:
    """A fixed seed per parametrised case, derived from its key (crc32 is stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))
