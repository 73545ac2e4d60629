"""The printed-formula check: each formula's LaTeX, evaluated with NumPy, must agree with its implementation.

Three layers: one test per syntax feature of the evaluator (a right form passes, a wrong one fails, on a
one-formula sheet with a hand-written implementation); deliberately wrong printed forms of the shipped
formulas (each must fail) and equivalent rewrites (each must pass); and the messages users see.
"""

from __future__ import annotations

import textwrap
import time
import types
from pathlib import Path

import pytest

from sheetgen.doctests import import_module
from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text
from sheetgen.model import Sheet
from sheetgen.printed import PrintedReport, check_formula, check_printed
from sheetgen.render.code import render_module

from .conftest import SHEET_PATH

# --- helpers ------------------------------------------------------------------------------------------


def _block(text: str, indent: int) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * indent)


def entry(fid: str, latex: str, implementation: str, examples: str, check: str = "") -> str:
    """One formula entry as YAML (examples need no expected output: only the calls matter here)."""
    out = (f"      - kind: formula\n        id: {fid}\n        name: {fid}\n"
           f"        latex: |\n{_block(latex, 10)}\n"
           f"        meaning: Test formula.\n        source: Test.\n"
           f"        implementation: |\n{_block(implementation, 10)}\n"
           f"        examples: |\n{_block(examples, 10)}\n")
    if check:
        out += f"        check:\n{_block(check, 10)}\n"
    return out


def sheet_of(*entries: str) -> Sheet:
    text = ("sheet:\n  title: Test\nsections:\n  - id: s\n    title: S\n    entries:\n" + "".join(entries))
    return load_sheet_text(text, "test.yaml")


def problems(latex: str, implementation: str, examples: str, check: str = "", *others: str) -> list[str]:
    """Problems of the first formula of a small sheet (others: more entries, e.g. a function it calls)."""
    fid = implementation.strip().split("(")[0].removeprefix("def ").strip()
    sheet = sheet_of(entry(fid, latex, implementation, examples, check), *others)
    module = import_module(render_module(sheet))
    return [str(p) for p in check_formula(sheet, sheet.formula(fid), module)]


def passes(*args: str) -> bool:
    found = problems(*args)
    assert all("cannot read" not in p for p in found), found  # a wrong form must fail on its numbers
    return not found


def check_mutated(sheet: Sheet, module: types.ModuleType, fid: str, old: str, new: str) -> list[str]:
    """Problems of a shipped formula whose printed LaTeX has `old` replaced by `new` (code unchanged)."""
    formula = sheet.formula(fid)
    assert old in formula.latex, f"{old!r} not in {fid}'s latex"
    changed = formula.model_copy(update={"latex": formula.latex.replace(old, new, 1)})
    return [str(p) for p in check_formula(sheet, changed, module)]


# --- one test per syntax feature ----------------------------------------------------------------------

ARITH = "def f(a, b):\n    return a / b + 1"


def test_frac() -> None:
    assert passes(r"y = \frac{a}{b} + 1", ARITH, ">>> f(3.0, 4.0)")
    assert not passes(r"y = \frac{b}{a} + 1", ARITH, ">>> f(3.0, 4.0)")


def test_sqrt_and_root() -> None:
    impl = "def f(x):\n    return np.sqrt(x) + np.cbrt(x)"
    assert passes(r"y = \sqrt{x} + \sqrt[3]{x}", impl, ">>> f(8.0)")
    assert not passes(r"y = \sqrt{x} + \sqrt{x}", impl, ">>> f(8.0)")


def test_sum_with_limits_binds_n_to_the_axis_length() -> None:
    impl = "def f(y, y_hat):\n    return np.mean((np.asarray(y) - np.asarray(y_hat)) ** 2)"
    calls = ">>> f([0.0, 1.0, 5.0], [1.0, 3.0, 2.0])"
    assert passes(r"L = \frac{1}{n} \sum_{i=1}^{n} (y_i - \hat y_i)^2", impl, calls)
    assert not passes(r"L = \sum_{i=1}^{n} (y_i - \hat y_i)^2", impl, calls)
    assert not passes(r"L = \frac{1}{n} \sum_{i=1}^{n} (y_i - \hat y_i)", impl, calls)
    assert passes(r"L = \frac{1}{n} \sum_i (y_i - \hat y_i)^2", impl, calls)  # n: the length the sum runs over
    assert not passes(r"L = \frac{1}{n} \sum_i (y_i - \hat y_i)", impl, calls)


def test_sum_index_names_an_axis_and_two_indices() -> None:
    w = "def f(y, w):\n    return float(np.sum(np.asarray(y) * np.asarray(w)[None, :]))"
    assert passes(r"s = \sum_n \sum_k y_{nk} w_k", w, ">>> f([[1.0, 2.0], [3.0, 5.0]], [2.0, -1.0])")
    assert not passes(r"s = \sum_n \sum_k y_{nk} w_n", w, ">>> f([[1.0, 2.0], [3.0, 5.0]], [2.0, -1.0])")


def test_product() -> None:
    impl = "def f(x):\n    return np.prod(x)"
    assert passes(r"P = \prod_i x_i", impl, ">>> f([2.0, 3.0, 4.0])")
    assert not passes(r"P = \sum_i x_i", impl, ">>> f([2.0, 3.0, 4.0])")


def test_norms() -> None:
    impl = "def f(x):\n    return np.linalg.norm(x) + np.sum(np.abs(x))"
    assert passes(r"y = \lVert x \rVert + \lVert x \rVert_1", impl, ">>> f([3.0, -4.0])")
    assert not passes(r"y = \lVert x \rVert_1 + \lVert x \rVert_1", impl, ">>> f([3.0, -4.0])")


def test_abs_and_set_size() -> None:
    impl = "def f(w, S):\n    return np.sum(np.abs(w)) / len(S)"
    assert passes(r"y = \frac{\sum_j \lvert w_j \rvert}{\lvert S \rvert}", impl, ">>> f([1.0, -2.0], [5, 6, 7, 8])")
    assert not passes(r"y = \sum_j w_j", impl, ">>> f([1.0, -2.0], [5, 6, 7, 8])")


def test_floor_and_ceil() -> None:
    impl = "def f(w, s):\n    return (w - 3) // s + 1 + -(-w // s)"
    latex = r"O = \left\lfloor \frac{w - 3}{s} \right\rfloor + 1 + \lceil w / s \rceil"
    assert passes(latex, impl, ">>> f(8, 2)\n>>> f(9, 2)")
    assert not passes(r"O = \frac{w - 3}{s} + 1 + \lceil w / s \rceil", impl, ">>> f(8, 2)")


def test_exp_and_logs() -> None:
    impl = "def f(z):\n    return np.exp(z) + np.log(z) + np.log2(z)"
    assert passes(r"y = e^{z} + \ln z + \log_2 z", impl, ">>> f(3.0)")
    assert passes(r"y = \exp(z) + \log z + \frac{\log z}{\log 2}", impl, ">>> f(3.0)")
    assert not passes(r"y = e^{z} + \log z + \log z", impl, ">>> f(3.0)")


def test_max_min_elementwise_and_over_an_index() -> None:
    impl = "def f(z):\n    z = np.asarray(z)\n    return np.maximum(0, z) - z.max() + z.min()"
    assert passes(r"y = \max(0, z) - \max_j z_j + \min_j z_j", impl, ">>> f([-1.0, 2.0, 0.5])")
    assert not passes(r"y = \max(0, z) - \min_j z_j + \min_j z_j", impl, ">>> f([-1.0, 2.0, 0.5])")


def test_hats_tildes_primes_bind_by_name() -> None:
    impl = "def f(y_hat, x_tilde, f_prime):\n    return y_hat * x_tilde + f_prime"
    assert passes(r"r = \hat y \tilde x + f^{\prime}", impl, ">>> f(2.0, 3.0, 5.0)")
    assert passes(r"r = \hat{y} \, \tilde{x} + f'", impl, ">>> f(2.0, 3.0, 5.0)")
    assert not passes(r"r = \hat y + \tilde x f^\prime", impl, ">>> f(2.0, 3.0, 5.0)")


def test_subscripts_and_superscripts_bind_by_name() -> None:
    impl = "def f(beta1, c_in, W_ih, n_in, tp, k):\n    return beta1 ** 2 * c_in + W_ih * n_in + tp + k"
    calls = ">>> f(0.5, 3.0, 2.0, 7.0, 11.0, 13.0)"
    assert passes(r"y = \beta_1^2 C_\text{in} + W_{ih} n_{in} + TP + K", impl, calls)
    assert not passes(r"y = \beta_1 C_\text{in} + W_{ih} n_{in} + TP + K", impl, calls)


def test_transpose_and_matrix_products() -> None:
    impl = "def f(Q, K, w):\n    Q, K = np.asarray(Q), np.asarray(K)\n    return Q @ K.T @ w"
    calls = ">>> f([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]], [[1.0, 0.0], [2.0, 5.0]], [1.0, -2.0])"
    assert passes(r"s = QK^\top w", impl, calls)
    assert not passes(r"s = Q K w", impl, calls)  # 3×2 @ 2×2 @ 2 has the same shape, other numbers


def test_juxtaposition_of_lower_case_is_elementwise_and_odot() -> None:
    impl = "def f(a, b, A, B):\n    return np.multiply(a, b) + np.sum(np.asarray(A) * np.asarray(B))"
    calls = ">>> f([1.0, 2.0], [3.0, 4.0], [[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]])"
    assert passes(r"y = a b + \sum_i \sum_j (A \odot B)_{ij}", impl, calls)
    assert not passes(r"y = a b + \sum_i \sum_j (A B)_{ij}", impl, calls)


def test_cdot_is_a_dot_product_of_vectors() -> None:
    impl = "def f(a, b, c):\n    return np.dot(a, b) * c"
    assert passes(r"y = a \cdot b \cdot c", impl, ">>> f([1.0, 2.0], [3.0, 4.0], 2.0)")
    assert not passes(r"y = a \cdot c", impl, ">>> f([1.0, 2.0], [3.0, 4.0], 2.0)")


def test_operatorname_calls_another_formula_of_the_sheet() -> None:
    other = entry("softmax", r"\operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_k e^{z_k}}",
                  "def softmax(z):\n    e = np.exp(np.asarray(z, dtype=float))\n    return e / e.sum()",
                  ">>> softmax([0.0, 1.0])")
    impl = "def g(z):\n    return softmax(np.asarray(z) / 2)"
    assert passes(r"y = \operatorname{softmax}(z / 2)", impl, ">>> g([1.0, 3.0])", "", other)
    assert not passes(r"y = \operatorname{softmax}(z)", impl, ">>> g([1.0, 3.0])", "", other)


def test_the_own_function_is_never_used_to_check_itself() -> None:
    impl = "def relu(z):\n    return np.maximum(0, z)"
    found = problems(r"y = \operatorname{ReLU}(z)", impl, ">>> relu([-1.0, 2.0])")
    assert found and "ReLU" in found[0] and "not bound" in found[0]


def test_expectation_and_its_square() -> None:
    impl = "def variance(x):\n    x = np.asarray(x, dtype=float)\n    return np.mean((x - x.mean()) ** 2)"
    calls = ">>> variance([1.0, 2.0, 4.0, 9.0])"
    assert passes(r"\operatorname{Var}(X) = \mathbb{E}[X^2] - (\mathbb{E}[X])^2", impl, calls)
    assert passes(r"\operatorname{Var}(X) = \mathbb{E}[X^2] - \mathbb{E}[X]^2", impl, calls)
    assert not passes(r"\operatorname{Var}(X) = \mathbb{E}[X^2] - \mathbb{E}[X]", impl, calls)


def test_text_names_and_letter_runs() -> None:
    impl = "def precision(tp, fp):\n    return tp / (tp + fp)"
    assert passes(r"\text{Precision} = \frac{TP}{TP + FP}", impl, ">>> precision(3, 1)")
    assert not passes(r"\text{Precision} = \frac{FP}{TP + FP}", impl, ">>> precision(3, 1)")


def test_every_side_of_an_equals_chain_is_compared() -> None:
    impl = "def dot(a, b):\n    return float(np.dot(a, b))"
    calls = ">>> dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])"
    assert passes(r"a \cdot b = \sum_i a_i b_i = \langle a, b \rangle", impl, calls)
    assert not passes(r"a \cdot b = \sum_i a_i + b_i = \langle a, b \rangle", impl, calls)
    assert not passes(r"a \cdot b = \sum_i a_i b_i = \langle a, a \rangle", impl, calls)


def test_leftarrow_updates_are_compared_with_the_returned_values() -> None:
    impl = ("def step(theta, v, grad, lr, beta):\n    v = beta * np.asarray(v) + grad\n"
            "    return np.asarray(theta) - lr * v, v")
    calls = ">>> step([1.0, 2.0], [0.5, -1.0], [2.0, 1.0], 0.1, 0.9)"
    check = "returns: [theta, v]\nsymbols: {'\\nabla_\\theta L': grad}"
    good = r"v \leftarrow \beta v + \nabla_\theta L, \quad \theta \leftarrow \theta - \eta v"
    assert passes(good, impl.replace("lr,", "lr,"), calls, check)
    assert not passes(good.replace(r"\theta - \eta v", r"\theta + \eta v"), impl, calls, check)
    assert not passes(good.replace(r"\beta v +", r"v +"), impl, calls, check)


def test_time_subscripts_old_and_new_values() -> None:
    impl = "def cell(h, x):\n    return np.tanh(np.asarray(h) + 2 * np.asarray(x))"
    assert passes(r"h_t = \tanh(h_{t-1} + 2 x_t)", impl, ">>> cell([0.1, 0.2], [0.3, -0.4])")
    assert not passes(r"h_t = \tanh(h_{t-1} + x_t)", impl, ">>> cell([0.1, 0.2], [0.3, -0.4])")


def test_cases() -> None:
    impl = "def g(z):\n    return (np.asarray(z) > 0).astype(float)"
    assert passes(r"g(z) = \begin{cases} 1 & z > 0 \\ 0 & z \le 0 \end{cases}", impl, ">>> g([-1.0, 0.0, 2.0])")
    assert not passes(r"g(z) = \begin{cases} 1 & z \ge 0 \\ 0 & z < 0 \end{cases}", impl, ">>> g([-1.0, 0.0, 2.0])")


def test_sim_checks_a_distribution_only_with_enough_samples() -> None:
    impl = "def init(n, rng):\n    return rng.normal(0.0, np.sqrt(2.0 / n), size=(n, 40))"
    many = ">>> init(100, np.random.default_rng(0))"
    assert passes(r"W \sim \mathcal{N}\!\left(0, \frac{2}{n}\right)", impl, many)
    assert not passes(r"W \sim \mathcal{N}\!\left(0, \frac{1}{n}\right)", impl, many)
    few = problems(r"W \sim \mathcal{N}\!\left(0, \frac{1}{n}\right)", impl, ">>> init(5, np.random.default_rng(0))")
    assert len(few) == 1 and "never compared" in few[0]  # 200 draws: not checked, and the check says so


def test_free_indices_on_the_left_side() -> None:
    impl = "def conv(x, W):\n    return np.einsum('oc,chw->ohw', np.asarray(W), np.asarray(x))"
    calls = ">>> conv(np.arange(12.0).reshape(3, 2, 2), [[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]])"
    assert passes(r"y_{o,h,w} = \sum_c W_{o,c} \, x_{c,h,w}", impl, calls)
    assert not passes(r"y_{o,h,w} = \sum_c W_{o,c} \, x_{c,w,h}", impl, calls)


def test_free_index_expressions_on_the_left_side() -> None:
    impl = ("def pe(n, d):\n    pos = np.arange(n)[:, None]\n    i = np.arange(0, d, 2)[None, :]\n"
            "    out = np.zeros((n, d))\n    out[:, 0::2] = np.sin(pos / 10000 ** (i / d))\n"
            "    out[:, 1::2] = np.cos(pos / 10000 ** (i / d))\n    return out")
    good = r"PE_{(pos, 2i)} = \sin(pos / 10000^{2i/d}), \quad PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i/d})"
    assert passes(good, impl, ">>> pe(5, 6)")
    assert not passes(good.replace(r"\cos", r"\sin"), impl, ">>> pe(5, 6)")


# --- coverage: every element of a result is given by some printed statement ----------------------------

PE_IMPL = ("def pe(n, d):\n    pos = np.arange(n)[:, None]\n    i = np.arange(0, d, 2)[None, :]\n"
           "    out = np.zeros((n, d))\n    out[:, 0::2] = np.sin(pos / 10000 ** (i / d))\n"
           "    out[:, 1::2] = np.cos(pos / 10000 ** (i / d))\n    return out")
PE_SIN = r"PE_{(pos, 2i)} = \sin(pos / 10000^{2i/d})"
PE_COS = r"PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i/d})"
OUTER = "def f(x):\n    x = np.asarray(x, dtype=float)\n    return np.outer(x, x)"
CONV = "def conv(x, W):\n    return np.einsum('oc,chw->ohw', np.asarray(W), np.asarray(x))"
CONV_CALL = ">>> conv(np.arange(12.0).reshape(3, 2, 2), [[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]])"


def test_the_seeds_positional_encoding_defines_only_half_of_the_result(sheet: Sheet,
                                                                      formulas: types.ModuleType) -> None:
    import re

    formula = sheet.formula("positional_encoding")
    assert formula.seed_error is not None and formula.seed_error.printed is not None
    assert "2i+1" not in formula.seed_error.printed  # the seed printed the sines only
    assert not check_formula(sheet, formula, formulas), "the shipped two-statement form must pass"
    seed = formula.model_copy(update={"latex": formula.seed_error.printed})
    found = [str(p) for p in check_formula(sheet, seed, formulas)]
    assert len(found) == 1, found
    assert found[0].startswith(sheet.where("positional_encoding", "latex") + " latex: the printed formula defines "
                               "only "), found
    m = re.search(r"defines only (\d+) of (\d+) elements of the result for "
                  r"positional_encoding\(n_positions=(\d+), d_model=(\d+)\) \(e\.g\. \[0, 1\] is never given\)",
                  found[0])
    assert m, found[0]
    defined, total, n, d = map(int, m.groups())
    assert (total, defined) == (n * d, n * d // 2)  # every position, the even columns only
    assert "print the missing case (e.g. the odd columns) or mark it unchecked in check:" in found[0]


def test_a_complete_two_statement_positional_encoding_passes_and_each_half_alone_fails() -> None:
    call = ">>> pe(5, 6)"
    assert passes(rf"{PE_SIN}, \quad {PE_COS}", PE_IMPL, call)
    # pe(5, 6) has 5 · 6 = 30 elements; either statement alone gives the 5 · 3 = 15 of its columns.
    sines = problems(PE_SIN, PE_IMPL, call)
    assert len(sines) == 1 and "defines only 15 of 30 elements of the result for pe(n=5, d=6)" in sines[0]
    assert "(e.g. [0, 1] is never given)" in sines[0] and "(e.g. the odd columns)" in sines[0]
    cosines = problems(PE_COS, PE_IMPL, call)
    assert len(cosines) == 1 and "15 of 30" in cosines[0] and "(e.g. [0, 0] is never given)" in cosines[0]
    assert "(e.g. the even columns)" in cosines[0]
    # a wrong value is reported as a wrong value, not as a gap
    wrong = problems(PE_SIN.replace(r"\sin", r"\cos"), PE_IMPL, call)
    assert len(wrong) == 1 and "the implementation gives" in wrong[0]
    # partial by design stays expressible: the odd case printed, its value marked unchecked with a reason
    prose = rf"{PE_SIN}, \quad PE_{{(pos, 2i+1)}} = \text{{its cosine}}"
    assert passes(prose, PE_IMPL, call, "unchecked: {'\\text{its cosine}': the cosine is not evaluated here}")
    # a whole statement marked unchecked is not read at all, so it cannot say which elements it gives
    whole = "unchecked: {'PE_{(pos, 2i+1)} = \\text{its cosine}': not evaluated}"
    assert "15 of 30" in problems(prose, PE_IMPL, call, whole)[0]


def test_a_conv_with_every_free_index_covers_the_result() -> None:
    assert passes(r"y_{o,h,w} = \sum_c W_{o,c} \, x_{c,h,w}", CONV, CONV_CALL)
    # y is 2 × 2 × 2 = 8 elements; 2w < 2 only for w = 0, so half of them (w = 1) are never given
    found = problems(r"y_{o,h,2w} = \sum_c W_{o,c} \, x_{c,h,2w}", CONV, CONV_CALL)
    assert len(found) == 1 and "defines only 4 of 8 elements of the result" in found[0], found
    assert "(e.g. [0, 0, 1] is never given)" in found[0] and "(e.g. index 1 on axis 2)" in found[0]


def test_a_formula_defining_only_the_diagonal_of_a_matrix_fails() -> None:
    call = ">>> f([1.0, 2.0, 3.0])"
    assert passes(r"y_{i,j} = x_i x_j", OUTER, call)
    for diagonal in (r"y_{i,i} = x_i^2", r"y_{ii} = x_i^2"):
        found = problems(diagonal, OUTER, call)  # 3 of the 3 × 3 = 9 elements
        assert len(found) == 1 and "defines only 3 of 9 elements of the result for f(x=[1.0, 2.0, 3.0])" in found[0]
        assert "(e.g. [0, 1] is never given)" in found[0] and "the off-diagonal elements" in found[0]


def test_a_returned_array_of_a_tuple_is_compared_and_covered_through_its_free_indices() -> None:
    impl = "def f(x):\n    x = np.asarray(x, dtype=float)\n    return x.sum(), np.outer(x, x)"
    call, check = ">>> f([1.0, 2.0, 3.0])", "returns: [_s, P]"
    assert passes(r"P_{i,j} = x_i x_j", impl, call, check)
    assert not passes(r"P_{i,j} = x_i x_i", impl, call, check)  # x_0 x_0 = 1 where P[0, 1] = 2
    found = problems(r"P_{i,i} = x_i^2", impl, call, check)
    assert len(found) == 1 and "defines only 3 of 9 elements of the returned P" in found[0], found


def test_indicator_and_sums_over_a_set() -> None:
    impl = ("def auc(y, s):\n    y, s = np.asarray(y), np.asarray(s)\n    p, n = s[y == 1], s[y == 0]\n"
            "    return np.mean((p[:, None] > n[None, :]) + 0.5 * (p[:, None] == n[None, :]))")
    check = "symbols: {'+': 'y == 1', '-': 'y == 0', 'n_+': 'np.sum(y == 1)', 'n_-': 'np.sum(y == 0)'}"
    good = (r"A = \frac{1}{n_+ n_-} \sum_{i \in +} \sum_{j \in -} \big[ \mathbb{1}(s_i > s_j) "
            r"+ \tfrac{1}{2} \mathbb{1}(s_i = s_j) \big]")
    calls = ">>> auc([0, 1, 0, 1, 1], [0.2, 0.5, 0.5, 0.9, 0.1])"
    assert passes(good, impl, calls, check)
    assert not passes(good.replace(r" + \tfrac{1}{2} \mathbb{1}(s_i = s_j)", ""), impl, calls, check)


def test_probability_notation_binds_by_name() -> None:
    impl = "def bayes(p_b_given_a, p_a, p_b):\n    return p_b_given_a * p_a / p_b"
    assert passes(r"P(A \mid B) = \frac{P(B \mid A)\, P(A)}{P(B)}", impl, ">>> bayes(0.9, 0.01, 0.05)")
    assert not passes(r"P(A \mid B) = \frac{P(B \mid A)}{P(B)}", impl, ">>> bayes(0.9, 0.01, 0.05)")


def test_concatenation_brackets() -> None:
    impl = "def gate(h, x, W):\n    return np.asarray(W) @ np.concatenate([h, x])"
    calls = ">>> gate([1.0], [2.0, 3.0], [[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])"
    assert passes(r"g = W[h, x]", impl, calls)
    assert not passes(r"g = W[x, h]", impl, calls)


def test_symbols_block_binds_compound_symbols_and_expressions() -> None:
    impl = "def sgd(theta, grad, lr):\n    return np.asarray(theta) - lr * np.asarray(grad)"
    calls = ">>> sgd([1.0, 2.0], [2.0, -4.0], 0.25)"
    good = r"\theta \leftarrow \theta - \eta \, \nabla_\theta L"
    assert passes(good, impl, calls, "symbols: {'\\nabla_\\theta L': grad}")
    assert passes(r"\theta \leftarrow \theta - \eta \, g", impl, calls, "symbols: {g: 'np.asarray(grad) * 1'}")
    assert not passes(r"\theta \leftarrow \theta + \eta \, g", impl, calls, "symbols: {g: grad}")


def test_calls_selects_the_calls_the_printed_form_describes() -> None:
    impl = "def norm(x, axis=None):\n    return np.sqrt(np.sum(np.asarray(x) ** 2, axis=axis))"
    calls = ">>> norm([3.0, 4.0])\n>>> norm([[3.0, 4.0], [6.0, 8.0]], axis=1)"
    assert not passes(r"\lVert x \rVert_2 = \sqrt{\sum_i x_i^2}", impl, calls)
    assert passes(r"\lVert x \rVert_2 = \sqrt{\sum_i x_i^2}", impl, calls, "calls: 'axis is None'")


def test_unchecked_sides_are_not_evaluated() -> None:
    impl = "def dot(a, b):\n    return float(np.dot(a, b))"
    latex = r"a \cdot b = \sum_i a_i b_i = \lVert a \rVert \, \lVert b \rVert \cos\theta"
    assert "not bound" in problems(latex, impl, ">>> dot([1.0, 2.0], [3.0, 4.0])")[0]
    check = "unchecked:\n  '\\lVert a \\rVert \\, \\lVert b \\rVert \\cos\\theta': the angle is not an input"
    assert passes(latex, impl, ">>> dot([1.0, 2.0], [3.0, 4.0])", check)


def test_undefined_printed_values_are_not_compared() -> None:
    impl = "def precision(tp, fp):\n    return 0.0 if tp + fp == 0 else tp / (tp + fp)"
    assert passes(r"\text{Precision} = \frac{TP}{TP + FP}", impl, ">>> precision(0, 0)\n>>> precision(3, 1)")
    only_undefined = problems(r"\text{Precision} = \frac{TP}{TP + FP}", impl, ">>> precision(0, 0)")
    assert "never compared" in only_undefined[0]


# --- the shipped sheet ------------------------------------------------------------------------------


def test_the_shipped_sheet_passes_with_at_most_two_skips(sheet: Sheet, formulas: types.ModuleType) -> None:
    started = time.perf_counter()
    report = check_printed(sheet, formulas)
    elapsed = time.perf_counter() - started
    assert isinstance(report, PrintedReport)
    assert report.total == len(sheet.formulas())
    assert len(report.skipped) <= 2, report.skipped
    assert report.checked == report.total - len(report.skipped)
    assert all(len(reason) >= 10 for _, reason in report.skipped)
    assert report.is_checked("precision") and not report.is_checked("average_precision")
    assert report.lines()[0] == f"printed formulas checked: {report.checked}/{report.total}"
    assert elapsed < 3.0  # about 0.3 s on a quiet machine; generous for a shared CI core


# (id, printed fragment, wrong replacement): each wrong form must fail on the shipped examples
WRONG = [
    ("precision", r"\frac{TP}{TP + FP}", r"\frac{TP}{TP + FN}"),
    ("recall", r"\frac{TP}{TP + FN}", r"\frac{TP}{TP + FP}"),
    ("conv_output_size", r"\left\lfloor \frac{W - K + 2P}{S} \right\rfloor + 1", r"\frac{W - K + 2P}{S} + 1"),
    ("dropout", r"y = \frac{m \odot x}{1 - p}", r"y = m \odot x"),
    ("positional_encoding", r"PE_{(pos, 2i+1)} = \cos", r"PE_{(pos, 2i+1)} = \sin"),
    ("sigmoid", r"\frac{1}{1 + e^{-z}}", r"\frac{1}{1 + e^{z}}"),
    ("mse", r"L = \frac{1}{n} \sum_{i=1}^{n}", r"L = \sum_{i=1}^{n}"),
    ("binary_cross_entropy", r"L = -\frac{1}{n}", r"L = \frac{1}{n}"),
    ("l1_penalty", r"\lvert w_j \rvert", r"w_j^2"),
    ("l2_penalty", r"\sum_j w_j^2", r"\sum_j w_j"),
    ("gini", r"G = 1 - \sum_i p_i^2", r"G = 1 - \sum_i p_i"),
    ("entropy", r"\log_2 p_i", r"\log p_i"),
    ("f1_score", r"\frac{2 P R}{P + R}", r"\frac{P R}{P + R}"),
    ("relu", r"\max(0, z)", r"\max(0, -z)"),
    ("sigmoid_grad", r"(1 - \sigma(z))", r"(1 + \sigma(z))"),
    ("he_normal", r"\frac{2}{n_{in}}", r"\frac{1}{n_{in}}"),
    ("xavier_normal", r"\frac{2}{n_{in} + n_{out}}", r"\frac{1}{n_{in} + n_{out}}"),
    ("sgd_step", r"\theta - \eta", r"\theta + \eta"),
    ("momentum_step", r"\theta \leftarrow \theta - \eta v", r"\theta \leftarrow \theta - v"),
    ("rnn_cell", r" + b_{hh})", r")"),
    ("lstm_cell", r"C_t = f_t \odot C_{t-1} + i_t \odot \tilde C_t", r"C_t = f_t \odot C_{t-1} + \tilde C_t"),
    ("perplexity", r"\exp\!\Big(-\frac{1}{N}", r"\exp\!\Big(\frac{1}{N}"),
    ("cosine_similarity", r"{\lVert a \rVert \, \lVert b \rVert}", r"{\lVert a \rVert}"),
    ("roc_auc", r" + \tfrac{1}{2} \mathbb{1}(s_i = s_j)", ""),
    ("conv_params", r"C_\text{out} + C_\text{out}", r"C_\text{out}"),
    ("residual", r"y = \mathcal{F}(x) + x", r"y = \mathcal{F}(x)"),
    ("mf_predict", r"R \approx P Q^\top", r"R \approx Q P^\top"),
    ("variance", r"\mathbb{E}[X^2] - (\mathbb{E}[X])^2", r"\mathbb{E}[X^2] - \mathbb{E}[X]"),
    ("dot_product", r"\sum_i a_i b_i", r"\sum_i a_i + b_i"),
    ("linear_regression", r"X w + b", r"X w - b"),
    ("softmax", r"\frac{e^{z_i - \max_j z_j}}{\sum_k e^{z_k - \max_j z_j}}", r"\frac{e^{z_i}}{\sum_k e^{z_i}}"),
    ("batch_norm", r"y = \gamma \hat x + \beta", r"y = \gamma \hat x"),
    ("adam_step", r"\hat m_t = m_t / (1-\beta_1^t)", r"\hat m_t = m_t"),
    ("dense_backward", r"\delta^\top X", r"\delta^\top \delta"),
    ("information_gain", r"\frac{\lvert S_v \rvert}{\lvert S \rvert}", r"\frac{1}{\lvert S \rvert}"),
    ("conv1x1", r"x_{c,h,w}", r"x_{c,w,h}"),
    ("cross_entropy", r"y_{nk} \log \hat y_{nk}", r"\hat y_{nk} \log y_{nk}"),
    ("two_tower_scores", r"S = U I^\top", r"S = I U^\top"),
    # the seed's own errors and the ones the issue lists: caught because the examples make each term matter
    ("adam_step", r"(\sqrt{\hat v_t} + \epsilon)", r"\sqrt{\hat v_t + \epsilon}"),
    ("batch_norm", r"\sqrt{\sigma_B^2 + \epsilon}", r"(\sqrt{\sigma_B^2} + \epsilon)"),
    ("attention", r"\frac{QK^\top}{\sqrt{d_k}}", r"QK^\top"),
    ("multi_head_attention", r"\, W^O", ""),
]


@pytest.mark.parametrize(("fid", "old", "new"), WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_printed_form_fails(sheet: Sheet, formulas: types.ModuleType, fid: str, old: str, new: str) -> None:
    assert check_mutated(sheet, formulas, fid, old, old) == [], "the shipped form must pass first"
    found = check_mutated(sheet, formulas, fid, old, new)
    assert found, f"{fid}: the wrong form {new!r} passed"
    assert f"[{fid}] latex:" in found[0]


EQUIVALENT = [
    ("softmax", r"\frac{e^{z_i - \max_j z_j}}{\sum_k e^{z_k - \max_j z_j}}", r"\frac{e^{z_i}}{\sum_k e^{z_k}}"),
    ("variance", r"(\mathbb{E}[X])^2", r"\mathbb{E}[X]^2"),
    ("sigmoid", r"\frac{1}{1 + e^{-z}}", r"\frac{e^{z}}{e^{z} + 1}"),
    ("mse", r"(y_i - \hat y_i)^2", r"(\hat y_i - y_i)^2"),
    ("gini", r"G = 1 - \sum_i p_i^2", r"G = 1 - \sum_i p_i \, p_i"),
    ("f1_score", r"\frac{2 P R}{P + R}", r"\frac{2}{1/P + 1/R}"),
]


@pytest.mark.parametrize(("fid", "old", "new"), EQUIVALENT, ids=[w[0] for w in EQUIVALENT])
def test_an_equivalent_rewrite_passes(sheet: Sheet, formulas: types.ModuleType, fid: str, old: str,
                                      new: str) -> None:
    assert check_mutated(sheet, formulas, fid, old, new) == []


# Wrong forms that the shipped examples may not catch (ε too small to matter, identity weights, ...):
# with examples that make each term matter, each must fail. The implementation is the shipped one.
STRONG = [
    ("adam_step", r"(\sqrt{\hat v_t} + \epsilon)", r"\sqrt{\hat v_t + \epsilon}",
     ">>> adam_step(np.ones(2), np.array([0.3, -0.1]), np.zeros(2), np.zeros(2), t=1, lr=0.1, eps=0.05)"),
    ("batch_norm", r"\sqrt{\sigma_B^2 + \epsilon}", r"(\sqrt{\sigma_B^2} + \epsilon)",
     ">>> batch_norm([[1.0, 2.0], [3.0, 7.0], [4.0, 1.0]], [1.0, 2.0], [0.0, 1.0], eps=0.5)"),
    ("attention", r"\frac{QK^\top}{\sqrt{d_k}}", r"QK^\top",
     ">>> attention([[1.0, 0.0, 2.0, 1.0]], [[1.0, 2.0, 0.0, 1.0], [0.0, 1.0, 1.0, 3.0]], [[1.0, 2.0], [3.0, 5.0]])"),
    ("multi_head_attention", r"\, W^O", "",
     ">>> rng = np.random.default_rng(1)\n>>> W = rng.normal(size=(4, 4, 4))\n"
     ">>> multi_head_attention(rng.normal(size=(2, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), "
     "*W, n_heads=2)"),
    ("dropout", r"y = \frac{m \odot x}{1 - p}", r"y = m \odot x",
     ">>> dropout(np.ones(50), 0.3, np.random.default_rng(0))"),
    ("conv_output_size", r"\left\lfloor \frac{W - K + 2P}{S} \right\rfloor", r"\frac{W - K + 2P}{S}",
     ">>> conv_output_size(9, 2, 0, 2)"),
]


@pytest.mark.parametrize(("fid", "old", "new", "calls"), STRONG, ids=[s[0] for s in STRONG])
def test_wrong_forms_fail_on_examples_that_make_each_term_matter(sheet: Sheet, fid: str, old: str, new: str,
                                                                 calls: str) -> None:
    formula = sheet.formula(fid)
    assert old in formula.latex
    check = ""
    if formula.check is not None:
        check = formula.check.model_dump_json(exclude_defaults=True)  # JSON is YAML
    others = [entry(f.id, f.latex, f.implementation, ">>> 0", "") for f in sheet.formulas() if f.id != fid]
    right = problems(formula.latex, formula.implementation, calls, check, *others)
    assert right == [], right
    wrong = problems(formula.latex.replace(old, new), formula.implementation, calls, check, *others)
    assert wrong, f"{fid}: {new!r} passed"


# --- messages ------------------------------------------------------------------------------------------


def test_mismatch_message_names_line_entry_values_and_call() -> None:
    impl = "def conv_output_size(w, k, p=0, s=1):\n    return (w - k + 2 * p) // s + 1"
    found = problems(r"O = \frac{W - K + 2P}{S} + 1", impl, ">>> conv_output_size(8, 3, 0, 2)")
    assert found == ["test.yaml:11 [conv_output_size] latex: the printed formula gives 3.5, the implementation "
                     "gives 3.0 for conv_output_size(w=8, k=3, p=0, s=2) — in `\\frac{W - K + 2P}{S} + 1` — "
                     "fix the LaTeX or the implementation, or bind the symbol in check:"]


def test_unbound_symbol_message() -> None:
    found = problems(r"\text{Precision} = \frac{TP}{TP + FN}", "def precision(tp, fp):\n    return tp / (tp + fp)",
                     ">>> precision(3, 1)")
    assert len(found) == 1
    assert found[0].startswith("test.yaml:11 [precision] latex: symbol FN is not bound (for precision(tp=3, fp=1))")
    assert "add it to the entry's check block" in found[0]


def test_unreadable_latex_message() -> None:
    found = problems(r"y = \weird{x}", "def f(x):\n    return x", ">>> f(1.0)")
    assert found[0].startswith("test.yaml:11 [f] latex: the printed-formula check cannot read this LaTeX:")
    assert "skip" in found[0]


@pytest.mark.parametrize(("check", "expected"), [
    ("symbols: {x: '__import__(\"os\")'}", "name __import__ is not allowed"),
    ("symbols: {x: 'x.__class__'}", "attribute .__class__ is not allowed"),
    ("symbols: {x: 'open(\"/etc/passwd\")'}", "name 'open' is not an argument"),
    ("symbols: {x: '[i for i in x]'}", "ListComp is not allowed"),
    ("symbols: {q: x}", "symbols 'q' never occur in the evaluated LaTeX"),
    ("unchecked: {'z + 1': reason}", "unchecked: 'z + 1' is not a side or statement of the LaTeX"),
    ("calls: 'x.ndim == 5'", "no doctest call of f to evaluate the printed formula on (check: calls keeps none)"),
    ("returns: [a, b]", "check: returns names 2 values, but f(x=[1.0, 2.0]) returns 1"),
    ("calls: 'x.shape[5] == 1'", "calls: IndexError"),
    ("symbols: {x: 'np.split(x, 3)'}", "check: symbols 'x': ValueError"),
])
def test_block_problems_are_located_and_explained(check: str, expected: str) -> None:
    found = problems(r"y = x + 1", "def f(x):\n    return np.asarray(x) + 1", ">>> f([1.0, 2.0])", check)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith(("test.yaml:20 [f] check:", "test.yaml:11 [f] latex:"))


def test_a_tuple_result_needs_names() -> None:
    found = problems(r"a = x, \quad b = 2x", "def f(x):\n    return x, 2 * x", ">>> f(1.0)")
    assert "returns a tuple of 2 values" in found[0] and "check: {returns: [a, b]}" in found[0]
    assert passes(r"a = x, \quad b = 2x", "def f(x):\n    return x, 2 * x", ">>> f(1.0)", "returns: [a, b]")


def test_skip_needs_a_written_reason_and_is_reported() -> None:
    impl, calls = "def f(x):\n    return x", ">>> f(1.0)"
    with pytest.raises(SheetError, match=r"skip"):
        sheet_of(entry("f", "y = 2x", impl, calls, "skip: ''"))
    with pytest.raises(SheetError, match=r"test\.yaml:\d+:\d+ \[f\] skipp: unknown key 'skipp'"):
        sheet_of(entry("f", "y = 2x", impl, calls, "skipp: a real reason here"))
    sheet = sheet_of(entry("f", "y = 2x", impl, calls, "skip: R_n is a derived curve, not an input"),
                     entry("g", "y = x", "def g(x):\n    return x", ">>> g(1.0)"))
    report = check_printed(sheet, import_module(render_module(sheet)))
    assert (report.checked, report.total) == (1, 2)
    assert report.skipped == (("f", "R_n is a derived curve, not an input"),)
    assert report.lines() == ["printed formulas checked: 1/2", "  skipped f: R_n is a derived curve, not an input"]


def test_check_printed_raises_every_problem_at_once() -> None:
    sheet = sheet_of(entry("f", "y = 3x", "def f(x):\n    return 2 * x", ">>> f(1.0)"),
                     entry("g", "y = x + z", "def g(x):\n    return x", ">>> g(1.0)"))
    with pytest.raises(SheetError) as err:
        check_printed(sheet, import_module(render_module(sheet)))
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert "[f] latex: the printed formula gives 3.0, the implementation gives 2.0 for f(x=1.0)" in lines[0]
    assert "[g] latex: symbol z is not bound" in lines[1]


def test_arg_min_over_an_index() -> None:
    impl = ("def assign(X, centers):\n    X, C = np.asarray(X), np.asarray(centers)\n"
            "    return np.argmin(((X[:, None, :] - C[None, :, :]) ** 2).sum(-1), axis=1)")
    calls = ">>> assign([[0.0, 0.0], [5.0, 5.0], [4.0, 0.0]], [[5.0, 4.0], [0.0, 1.0], [3.0, 0.0]])"
    check = "symbols: {'\\mu_k': 'np.asarray(centers)', x_n: 'np.asarray(X)'}"
    assert passes(r"c_n = \arg\min_k \lVert x_n - \mu_k \rVert^2", impl, calls, check)
    assert not passes(r"c_n = \arg\max_k \lVert x_n - \mu_k \rVert^2", impl, calls, check)


def test_any_edit_of_a_printed_formula_gives_problems_not_a_crash(sheet: Sheet, formulas: types.ModuleType) -> None:
    """Deleting or doubling one character anywhere in a formula's LaTeX: a located problem or a pass."""
    import random

    rng = random.Random(8)
    picked = rng.sample(sheet.formulas(), 25)
    for formula in picked:
        for _ in range(6):
            at = rng.randrange(len(formula.latex))
            latex = formula.latex[:at] + formula.latex[at + rng.randrange(2):] if rng.random() < 0.5 \
                else formula.latex[:at] + formula.latex[at] + formula.latex[at:]
            changed = formula.model_copy(update={"latex": latex})
            for found in check_formula(sheet, changed, formulas):
                assert str(found).startswith(f"{sheet.source_path}:"), found
                assert f"[{formula.id}] latex:" in str(found) or f"[{formula.id}] check:" in str(found)


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    found = problems("y = " + "{" * 280 + "x" + "}" * 280, "def f(x):\n    return x", ">>> f(1.0)")
    assert found == [] or "nested too deeply" in found[0]


def test_every_returned_value_must_be_printed_unless_marked() -> None:
    impl = "def step(x):\n    return 2 * x, x + 1"
    assert passes(r"a = 2x, \quad b = x + 1", impl, ">>> step(3.0)", "returns: [a, b]")
    found = problems(r"a = 2x", impl, ">>> step(3.0)", "returns: [a, b]")
    assert len(found) == 1 and "never gives the returned b" in found[0] and "_b" in found[0]
    assert passes(r"a = 2x", impl, ">>> step(3.0)", "returns: [a, _b]")


def test_inverse_of_a_matrix_sum() -> None:
    impl = ("def ridge(X, y, lam):\n    X = np.asarray(X, dtype=float)\n"
            "    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ np.asarray(y))")
    calls = ">>> ridge([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0]], [3.0, 5.0, 1.0], 2.0)"
    check = "symbols: {I: 'np.eye(np.shape(X)[1])'}"
    assert passes(r"w = (X^\top X + \lambda I)^{-1} X^\top y", impl, calls, check)
    assert not passes(r"w = (X^\top X + I)^{-1} X^\top y", impl, calls, check)
    assert "never occur" not in problems(r"w = (X^\top X + I)^{-1} X^\top y", impl, calls, check)[0]


def test_a_returned_array_named_with_its_index() -> None:
    impl = ("def step(X, labels, k):\n    X, labels = np.asarray(X, dtype=float), np.asarray(labels)\n"
            "    return labels, np.stack([X[labels == j].mean(axis=0) for j in range(k)])")
    calls = ">>> step([[0.0, 1.0], [2.0, 3.0], [10.0, 10.0]], [0, 0, 1], 2)"
    check = "returns: [_labels, mu_k]\nsymbols: {'r_{nk}': 'labels[:, None] == np.arange(k)'}"
    good = r"\mu_k = \frac{\sum_{n} r_{nk} x_n}{\sum_{n} r_{nk}}"
    assert passes(good, impl, calls, check)
    assert not passes(good.replace(r"{\sum_{n} r_{nk}}", "{2}"), impl, calls, check)


def test_spacing_bold_and_roman_e() -> None:
    impl = "def f(W, x):\n    return np.exp(np.asarray(W) @ np.asarray(x))"
    calls = ">>> f([[1.0, 2.0], [0.0, -1.0]], [0.5, 0.25])"
    assert passes(r"y = \mathrm{e}^{\mathbf{W} \mathbf{x}}", impl, calls)
    assert passes(r"y = \exp\left(W~x\right)", impl, calls)
    assert not passes(r"y = \exp\left(\mathbf{W} \odot \mathbf{x}\right)", impl, calls)


@pytest.mark.parametrize(("fid", "old", "new", "expected"), [
    ("precision", r"\frac{TP}{TP + FP}", r"\frac{TP}{TP + FN}", "[precision] latex: symbol FN is not bound"),
    ("conv_output_size", r"\left\lfloor \frac{W - K + 2P}{S} \right\rfloor + 1", r"\frac{W - K + 2P}{S} + 1",
     "[conv_output_size] latex: the printed formula gives 3.5, the implementation gives 3.0 for "
     "conv_output_size(w=8, k=3, p=0, s=2)"),
])
def test_sheetgen_check_refuses_a_wrong_printed_formula(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        fid: str, old: str, new: str, expected: str) -> None:
    from sheetgen.cli import main

    text = SHEET_PATH.read_text(encoding="utf-8")
    start = text.index(f"id: {fid}\n")
    at = text.index(old, start)
    broken = tmp_path / "formulas.yaml"
    broken.write_text(text[:at] + new + text[at + len(old):], encoding="utf-8")
    assert main(["check", "-f", str(broken), "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if expected in x)
    assert line.startswith(f"{broken}:{text[:at].count(chr(10)) + 1} [{fid}] latex: ")
