"""The seed cheat sheet's errors, one test each: the sheet states the correct form, the code computes it.

Each test fails on the seed's wrong form (the formula text, the numbers, or both). Expected values are
worked out by hand in the comments, never taken from the function under test.
"""

from __future__ import annotations

import math
import re
import types

import numpy as np
import pytest

from sheetgen.model import Sheet


def latex(sheet: Sheet, formula_id: str) -> str:
    return re.sub(r"\s+", " ", sheet.formula(formula_id).latex)


def test_adam_eps_outside_sqrt(sheet: Sheet, formulas: types.ModuleType) -> None:
    tex = latex(sheet, "adam_step")
    assert re.search(r"\\sqrt\{\\hat v_t\} \+ \\epsilon", tex), tex  # √v̂ + ε, not √(v̂ + ε)
    assert not re.search(r"\\sqrt\{[^}]*\\epsilon", tex), tex
    # One step from m = v = 0 with g = 1e-4, eps = 1e-4, lr = 1, t = 1:
    # m̂ = g, v̂ = g² = 1e-8, √v̂ = 1e-4, step = 1e-4 / (1e-4 + 1e-4) = 0.5.
    # The seed's √(v̂ + ε) = √(1e-4 + 1e-8) ≈ 1.00005e-2 would give a step of ≈ 0.0099995.
    theta, _, _ = formulas.adam_step(np.array([0.0]), np.array([1e-4]), np.zeros(1), np.zeros(1), t=1,
                                     lr=1.0, eps=1e-4)
    assert theta[0] == pytest.approx(-0.5, rel=1e-12)


def test_adam_bias_correction(sheet: Sheet, formulas: types.ModuleType) -> None:
    tex = latex(sheet, "adam_step")
    assert "1-\\beta_1^t" in tex and "1-\\beta_2^t" in tex, tex
    # t = 1, g = 2, β1 = 0.9, β2 = 0.999: m = 0.2, v = 0.004; m̂ = 0.2/0.1 = 2, v̂ = 0.004/0.001 = 4,
    # step = lr·2/(2 + 1e-8) ≈ lr. Without bias correction: 0.2/(√0.004) ≈ 3.16·lr.
    theta, m, v = formulas.adam_step(np.array([1.0]), np.array([2.0]), np.zeros(1), np.zeros(1), t=1, lr=0.01)
    assert m[0] == pytest.approx(0.2) and v[0] == pytest.approx(0.004)
    assert theta[0] == pytest.approx(1.0 - 0.01 * 2 / (2 + 1e-8), rel=1e-12)


def test_lstm_has_candidate_and_hidden(sheet: Sheet, formulas: types.ModuleType) -> None:
    tex = latex(sheet, "lstm_cell")
    assert "\\tilde C_t = \\tanh(W_c[h_{t-1}, x_t] + b_c)" in tex, tex
    assert "h_t = o_t \\odot \\tanh(C_t)" in tex, tex
    for gate in "fio":
        assert f"\\sigma(W_{gate}[h_{{t-1}}, x_t] + b_{gate})" in tex, gate
    # All weights 0, biases only (PyTorch order i, f, g, o): i = σ(0) = 0.5, f = σ(0) = 0.5,
    # C̃ = tanh(1) = 0.761594, o = σ(0) = 0.5. With c_prev = 1: C = 0.5·1 + 0.5·0.761594 = 0.880797,
    # h = 0.5·tanh(0.880797) = 0.5·0.706955 = 0.353478. Without the candidate, C would be 0.5.
    bias = np.array([0.0, 0.0, 1.0, 0.0])
    h, c = formulas.lstm_cell([0.0], [0.0], [1.0], np.zeros((4, 1)), np.zeros((4, 1)), bias, np.zeros(4))
    assert c[0] == pytest.approx(0.5 + 0.5 * math.tanh(1.0), rel=1e-12)
    assert h[0] == pytest.approx(0.5 * math.tanh(0.5 + 0.5 * math.tanh(1.0)), rel=1e-12)


def test_positional_encoding_cos_on_odd(sheet: Sheet, formulas: types.ModuleType) -> None:
    tex = latex(sheet, "positional_encoding")
    assert "PE_{(pos, 2i)} = \\sin" in tex and "PE_{(pos, 2i+1)} = \\cos" in tex, tex
    pe = formulas.positional_encoding(3, 4)
    # Column 1 is i = 0, odd: cos(pos / 10000^0) = cos(pos); column 3 is i = 1: cos(pos / 100).
    assert pe[:, 1].tolist() == pytest.approx([1.0, math.cos(1.0), math.cos(2.0)])
    assert pe[:, 3].tolist() == pytest.approx([1.0, math.cos(0.01), math.cos(0.02)])
    assert pe[:, 2].tolist() == pytest.approx([0.0, math.sin(0.01), math.sin(0.02)])


def test_attention_softmax_over_keys(formulas: types.ModuleType) -> None:
    # Two queries, two keys, d_k = 1: scores = [[0, 0], [2, 0]] / 1. Over keys, row 0 is [½, ½] and
    # row 1 is [e²/(e²+1), 1/(e²+1)] = [0.880797, 0.119203]. The seed's softmax over the whole matrix
    # would give every row weights summing to less than 1.
    Q, K, V = [[0.0], [2.0]], [[1.0], [0.0]], [[10.0], [20.0]]
    out = formulas.attention(Q, K, V)
    e2 = math.exp(2.0)
    assert out[:, 0].tolist() == pytest.approx([15.0, 10 * e2 / (e2 + 1) + 20 / (e2 + 1)], rel=1e-12)
    # Batched input (the seed's K.T breaks on 3-D arrays): same answer in every batch element.
    batched = formulas.attention(np.stack([Q, Q]), np.stack([K, K]), np.stack([V, V]))
    assert batched.shape == (2, 2, 1)
    np.testing.assert_allclose(batched[1], out, rtol=1e-12)


def test_conv_output_size_floor(sheet: Sheet, formulas: types.ModuleType) -> None:
    assert "\\lfloor" in latex(sheet, "conv_output_size") and "\\rfloor" in latex(sheet, "conv_output_size")
    # W = 8, K = 3, P = 0, S = 2: (8 − 3)/2 + 1 = 3.5 in the seed's form; the real size is ⌊2.5⌋ + 1 = 3.
    result = formulas.conv_output_size(8, 3, 0, 2)
    assert result == 3 and isinstance(result, int)


def test_dropout_inverted_scaling(sheet: Sheet, formulas: types.ModuleType) -> None:
    assert "1 - p" in latex(sheet, "dropout")
    # p = 0.25: kept units become x / 0.75; on 200,000 ones the mean stays 1 (inverted dropout keeps
    # E[output] = input). Std of the mean: √(p/(1−p))/√n = √(1/3)/447 ≈ 0.0013, so 0.01 is > 7σ.
    x = np.ones(200_000)
    out = formulas.dropout(x, 0.25, np.random.default_rng(0))
    kept = out[out != 0]
    np.testing.assert_allclose(kept, 1 / 0.75, rtol=1e-12)
    assert abs(out.mean() - 1.0) < 0.01
    assert abs(kept.size / x.size - 0.75) < 0.01


def test_cross_entropy_sum_vs_mean(sheet: Sheet, formulas: types.ModuleType) -> None:
    # Binary: the printed formula averages (1/n), and so does the code.
    assert "\\frac{1}{n}" in latex(sheet, "binary_cross_entropy")
    # y = [1, 0], ŷ = [0.5, 0.5]: each term is −log 0.5 = ln 2; the mean is ln 2 (a sum would be 2 ln 2).
    assert float(formulas.binary_cross_entropy([1, 0], [0.5, 0.5])) == pytest.approx(math.log(2), rel=1e-9)
    # Categorical: one sample sums over classes, a batch averages the per-row sums (1/N in the formula).
    assert "\\frac{1}{N}" in latex(sheet, "cross_entropy")
    # One sample: −log 0.5 = ln 2 (the zero-label classes add nothing).
    one = float(formulas.cross_entropy([0, 1, 0], [0.25, 0.5, 0.25]))
    assert one == pytest.approx(math.log(2), rel=1e-12)
    # Rows: −log 1 = 0 and −log 0.5 = ln 2 → mean ln 2 / 2 (a sum would be ln 2).
    batch = float(formulas.cross_entropy([[1, 0], [0, 1]], [[1.0, 0.0], [0.5, 0.5]]))
    assert batch == pytest.approx(math.log(2) / 2, rel=1e-12)


# --- the printed-formula check refuses the seed's printed forms ---------------------------------------


def _seed_printed(sheet):  # type: ignore[no-untyped-def]
    return [f for f in sheet.formulas() if f.seed_error is not None and f.seed_error.printed is not None]


def test_every_seed_error_names_tests_that_exist(sheet) -> None:  # type: ignore[no-untyped-def]
    names = {name for name, value in globals().items() if name.startswith("test_") and callable(value)}
    errata = [f for f in sheet.formulas() if f.seed_error is not None]
    assert len(errata) >= 8
    for formula in errata:
        missing = set(formula.seed_error.tests) - names
        assert not missing, f"{formula.id}: seed_error names tests that do not exist: {missing}"


@pytest.mark.parametrize("formula_id", ["adam_step", "positional_encoding", "conv_output_size",
                                        "binary_cross_entropy", "lstm_cell", "dropout"])
def test_the_printed_check_refuses_the_seeds_printed_form(sheet, formulas, formula_id: str) -> None:  # type: ignore[no-untyped-def]
    """Had the seed's printed form been in formulas.yaml, the build would have stopped on it."""
    from sheetgen.printed import check_formula

    formula = sheet.formula(formula_id)
    assert formula.seed_error is not None and formula.seed_error.printed is not None
    assert not check_formula(sheet, formula, formulas), "the shipped form must pass"
    seed = formula.model_copy(update={"latex": formula.seed_error.printed})
    problems = [str(p) for p in check_formula(sheet, seed, formulas)]
    assert problems, f"{formula_id}: the seed's printed form passed the printed-formula check"
    assert all(f"[{formula_id}]" in p for p in problems)
