"""Reference tests: every function of the generated module against an independent implementation.

References are PyTorch (float64, CPU), scikit-learn and scipy, or the two sides of an equation computed
separately. Tests marked `torch` are skipped where torch is not installed; the `test_recorded_reference_*`
tests replay torch results stored in tests/reference/recorded.json (made by make_reference.py there).
Every test is registered with `@reference(...)`; a test fails when a formula has no reference test.

Tolerances: float64 against float64, so results agree to rounding; rtol=1e-9 leaves room for a different
summation order (BLAS, pairwise sums) and still catches any formula-level difference.
"""

from __future__ import annotations

import ast
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
from numpy.testing import assert_allclose, assert_array_equal
from scipy import linalg, special, stats
from scipy.spatial import distance
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from tests.reference_helpers import (
    close,
    reference,
    registered_reference_ids,
    rng_for,
    t64,
    to_np,
    torch_test,
)

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch-free and recorded tests still run
    torch = None  # type: ignore[assignment]
    F = None  # type: ignore[assignment]

RECORDED = Path(__file__).resolve().parent / "reference" / "recorded.json"


def test_every_formula_has_a_reference_test(sheet):
    registered = registered_reference_ids()
    formula_ids = {f.id for f in sheet.formulas()}
    missing = sorted(formula_ids - registered.keys())
    stale = sorted(registered.keys() - formula_ids)
    assert not missing and not stale, (
        f"formulas without a reference test in tests/test_reference*.py: {missing}; "
        f"registered ids that are not formulas of the sheet (stale): {stale}"
    )


def test_recorded_references_come_from_torch_not_from_sheetgen():
    # Expected values must be independent of the code under test.
    script = RECORDED.parent / "make_reference.py"
    imported = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "torch" in imported
    assert not imported & {"sheetgen", "formulas", "build"}, imported


# ======================================================================================================
# Math essentials
# ======================================================================================================


@reference("dot_product")
@pytest.mark.parametrize("n", [1, 3, 17, 256])
def test_dot_product_equals_exact_sum_and_norms_times_cosine(formulas, n):
    a, b = rng_for("dot", n).normal(size=(2, n))
    got = float(formulas.dot_product(a, b))
    # Σ aᵢbᵢ with exactly rounded summation.
    assert got == pytest.approx(math.fsum(a * b), rel=1e-12, abs=1e-12)
    # ‖a‖‖b‖cos θ with cos θ from scipy's cosine distance.
    cos_theta = 1.0 - distance.cosine(a, b)
    norms = linalg.norm(a) * linalg.norm(b)
    assert got == pytest.approx(norms * cos_theta, abs=1e-12 * norms)


@reference("dot_product")
def test_dot_product_of_orthogonal_and_zero_vectors_is_zero(formulas):
    assert float(formulas.dot_product([1.0, 2.0, 0.0], [-2.0, 1.0, 5.0])) == 0.0
    assert float(formulas.dot_product(np.zeros(4), np.arange(4.0))) == 0.0


@reference("dot_product")
@torch_test
@pytest.mark.parametrize("n", [2, 50])
def test_dot_product_matches_torch(formulas, n):
    a, b = rng_for("dot_torch", n).normal(size=(2, n))
    close(formulas.dot_product(a, b), torch.dot(t64(a), t64(b)).item())


@reference("cosine_similarity")
@pytest.mark.parametrize("n", [2, 5, 100])
def test_cosine_similarity_equals_dot_over_norms_and_scipy(formulas, n):
    a, b = rng_for("cos", n).normal(size=(2, n))
    got = float(formulas.cosine_similarity(a, b))
    by_hand = math.fsum(a * b) / (math.sqrt(math.fsum(a * a)) * math.sqrt(math.fsum(b * b)))
    assert got == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
    assert got == pytest.approx(1.0 - distance.cosine(a, b), rel=1e-9, abs=1e-12)


@reference("cosine_similarity")
def test_cosine_similarity_edge_cases(formulas):
    a = np.array([1.0, -2.0, 3.0])
    assert float(formulas.cosine_similarity(a, 7.5 * a)) == pytest.approx(1.0, rel=1e-12)
    assert float(formulas.cosine_similarity(a, -0.1 * a)) == pytest.approx(-1.0, rel=1e-12)
    assert float(formulas.cosine_similarity([1.0, 0.0], [0.0, 3.0])) == 0.0
    # The convention: 0.0 (not nan, no warning) when a vector is zero.
    assert float(formulas.cosine_similarity(np.zeros(3), a)) == 0.0
    assert float(formulas.cosine_similarity(a, np.zeros(3))) == 0.0
    assert float(formulas.cosine_similarity(np.zeros(3), np.zeros(3))) == 0.0


@reference("cosine_similarity")
@torch_test
def test_cosine_similarity_matches_torch(formulas):
    a, b = rng_for("cos_torch").normal(size=(2, 30))
    close(formulas.cosine_similarity(a, b), F.cosine_similarity(t64(a), t64(b), dim=0).item())


@reference("cosine_similarity")
def test_cosine_similarity_of_batches_is_row_by_row_like_scipy(formulas):
    # Last axis, like dot_product: one cosine per row, each against scipy's 1 − cosine distance.
    a, b = rng_for("cos_batch").normal(size=(2, 6, 5))
    got = formulas.cosine_similarity(a, b)
    assert got.shape == (6,)
    close(got, [1.0 - distance.cosine(a[i], b[i]) for i in range(6)])
    # A zero row gives 0.0 and leaves the other rows alone.
    a[2] = 0.0
    got = formulas.cosine_similarity(a, b)
    assert got[2] == 0.0
    close(np.delete(got, 2), [1.0 - distance.cosine(a[i], b[i]) for i in range(6) if i != 2])


@reference("cosine_similarity")
@torch_test
@pytest.mark.parametrize(("shape_a", "shape_b"), [((8, 5), (8, 5)), ((3, 4, 6), (3, 4, 6)), ((8, 5), (5,))])
def test_cosine_similarity_batches_match_torch(formulas, shape_a, shape_b):
    rng = rng_for("cos_torch_batch", shape_a, shape_b)
    a, b = rng.normal(size=shape_a), rng.normal(size=shape_b)
    close(formulas.cosine_similarity(a, b), to_np(F.cosine_similarity(t64(a), t64(b), dim=-1)))


L2_CASES = [((7,), None), ((7,), 0), ((4, 5), None), ((4, 5), 0), ((4, 5), 1), ((4, 5), -1), ((2, 3, 4), 2)]


@reference("l2_norm")
@pytest.mark.parametrize(("shape", "axis"), L2_CASES)
def test_l2_norm_matches_scipy(formulas, shape, axis):
    x = rng_for("l2", shape, axis).normal(size=shape)
    close(formulas.l2_norm(x, axis=axis), linalg.norm(x, axis=axis))


@reference("l2_norm")
def test_l2_norm_of_zero_vector_and_default_axis(formulas):
    assert float(formulas.l2_norm(np.zeros(5))) == 0.0
    # axis=None on a matrix is the Frobenius norm, as numpy/scipy.
    x = rng_for("l2_frob").normal(size=(3, 4))
    close(formulas.l2_norm(x), linalg.norm(x, "fro"))


@reference("l2_norm")
@torch_test
@pytest.mark.parametrize(("shape", "axis"), L2_CASES)
def test_l2_norm_matches_torch(formulas, shape, axis):
    x = rng_for("l2_torch", shape, axis).normal(size=shape)
    close(formulas.l2_norm(x, axis=axis), to_np(torch.linalg.vector_norm(t64(x), dim=axis)))


@reference("bayes_posterior")
@pytest.mark.parametrize("seed", range(4))
def test_bayes_posterior_equals_conditional_read_off_a_joint_table(formulas, seed):
    # A random joint distribution P(A=a, B=b) over 3 × 4 outcomes; P(A|B) straight from the table
    # versus Bayes' rule fed with P(B|A), P(A), P(B) computed from the same table.
    joint = np.random.default_rng(seed).dirichlet(np.ones(12)).reshape(3, 4)
    for a in range(3):
        for b in range(4):
            p_a, p_b = math.fsum(joint[a, :]), math.fsum(joint[:, b])
            direct = joint[a, b] / p_b
            got = formulas.bayes_posterior(joint[a, b] / p_a, p_a, p_b)
            assert float(got) == pytest.approx(direct, rel=1e-12)


@reference("bayes_posterior")
def test_bayes_posterior_rare_disease_example(formulas):
    # Counts: 10,000 people, 1% ill, test sensitivity 99%, false positive rate 5%.
    ill_pos, ill, healthy_pos, n = 99, 100, 495, 10_000
    direct = ill_pos / (ill_pos + healthy_pos)  # fraction of positives who are ill
    got = formulas.bayes_posterior(ill_pos / ill, ill / n, (ill_pos + healthy_pos) / n)
    assert float(got) == pytest.approx(direct, rel=1e-12)


@reference("variance")
@pytest.mark.parametrize("n", [1, 2, 10, 1000])
def test_variance_equals_definition_and_moment_identity(formulas, n):
    x = rng_for("var", n).normal(3.0, 2.0, size=n)
    got = float(formulas.variance(x))
    mean = math.fsum(x) / n
    definition = math.fsum((x - mean) ** 2) / n  # E[(X − μ)²]
    moments = math.fsum(x * x) / n - mean**2  # E[X²] − E[X]²
    tol = 1e-12 * (1 + mean**2)  # E[X²] − E[X]² cancels about mean² worth of digits
    assert got == pytest.approx(definition, abs=tol)
    assert got == pytest.approx(moments, abs=tol)
    assert got == pytest.approx(np.var(x), abs=tol)
    assert got == pytest.approx(statistics.pvariance(x), abs=tol)  # population, not n − 1


@reference("variance")
def test_variance_of_constant_is_zero(formulas):
    assert float(formulas.variance([0.1] * 10)) == pytest.approx(0.0, abs=1e-15)


@reference("variance")
@pytest.mark.parametrize(("x", "expected"), [
    # Deviations from the mean 1e9 + 2.5 are ±0.5, ±1.5: (2·0.25 + 2·2.25)/4 = 1.25. In floats the one-pass
    # E[X²] − E[X]² gives 0.0 here (X² ≈ 1e18, whose spacing is 128).
    ([1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4], 1.25),
    # Two values 0.1 apart: (0.05² + 0.05²)/2 = 0.0025, up to how 1e8 + 0.1 rounds; one-pass gives −2.0.
    ([1e8 + 0.1, 1e8 + 0.2], 0.0025),
])
def test_variance_with_a_large_mean_keeps_its_digits(formulas, x, expected):
    got = formulas.variance(x)
    assert got == pytest.approx(statistics.pvariance(x), rel=1e-12)  # exact (fractions) on the stored floats
    assert got == pytest.approx(np.var(x), rel=1e-12)
    assert got == pytest.approx(expected, rel=1e-6)


@reference("variance")
@torch_test
def test_variance_matches_torch_biased(formulas):
    x = rng_for("var_torch").normal(-1.0, 0.5, size=200)
    close(formulas.variance(x), torch.var(t64(x), correction=0).item())  # = unbiased=False


CHAIN_CASES = {
    # name: (f', g, g', f∘g in torch)
    "sin_of_square": (np.cos, lambda x: x**2 + 1, lambda x: 2 * x, lambda x: torch.sin(x**2 + 1)),
    "exp_of_tanh": (np.exp, np.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: torch.exp(torch.tanh(x))),
    "log_of_cosh": (lambda u: 1 / u, np.cosh, np.sinh, lambda x: torch.log(torch.cosh(x))),
}
CHAIN_F = {"sin_of_square": np.sin, "exp_of_tanh": np.exp, "log_of_cosh": np.log}


@reference("chain_rule")
@pytest.mark.parametrize("name", CHAIN_CASES)
def test_chain_rule_matches_central_finite_difference(formulas, name):
    f_prime, g, g_prime, _ = CHAIN_CASES[name]
    f = CHAIN_F[name]
    x = rng_for("chain", name).uniform(-1.5, 1.5, size=9)
    h = 1e-6  # central difference: O(h²) truncation + O(ε/h) rounding ≈ 1e-10
    numeric = (f(g(x + h)) - f(g(x - h))) / (2 * h)
    assert_allclose(formulas.chain_rule(f_prime, g, g_prime, x), numeric, rtol=1e-7, atol=1e-8)
    scalar = float(formulas.chain_rule(f_prime, g, g_prime, 0.3))
    assert scalar == pytest.approx((f(g(0.3 + h)) - f(g(0.3 - h))) / (2 * h), rel=1e-7, abs=1e-8)


@reference("chain_rule")
@torch_test
@pytest.mark.parametrize("name", CHAIN_CASES)
def test_chain_rule_matches_torch_autograd(formulas, name):
    f_prime, g, g_prime, composed = CHAIN_CASES[name]
    x = rng_for("chain_torch", name).uniform(-1.5, 1.5, size=9)
    xt = t64(x).requires_grad_()
    composed(xt).sum().backward()
    close(formulas.chain_rule(f_prime, g, g_prime, x), to_np(xt.grad))


# ======================================================================================================
# Classical ML
# ======================================================================================================

XWB_SHAPES = [(1, 1), (5, 3), (50, 10)]


def _xwb(key, n, d):
    rng = rng_for(key, n, d)
    return rng.normal(size=(n, d)), rng.normal(size=d), float(rng.normal())


@reference("linear_regression")
@pytest.mark.parametrize(("n", "d"), XWB_SHAPES)
def test_linear_regression_matches_sklearn_predict(formulas, n, d):
    X, w, b = _xwb("linreg", n, d)
    model = LinearRegression()
    model.coef_, model.intercept_ = w, b
    got = formulas.linear_regression(X, w, b)
    assert np.shape(got) == (n,)
    close(got, model.predict(X))


@reference("linear_regression")
@torch_test
@pytest.mark.parametrize(("n", "d"), XWB_SHAPES)
def test_linear_regression_matches_torch_linear(formulas, n, d):
    X, w, b = _xwb("linreg_torch", n, d)
    close(formulas.linear_regression(X, w, b), to_np(F.linear(t64(X), t64(w[None]), t64([b])))[:, 0])


@reference("mse")
@pytest.mark.parametrize("n", [1, 10, 1000])
def test_mse_matches_sklearn(formulas, n):
    y, y_hat = rng_for("mse", n).normal(size=(2, n))
    close(formulas.mse(y, y_hat), skm.mean_squared_error(y, y_hat))
    assert float(formulas.mse(y, y)) == 0.0


@reference("mse")
@torch_test
@pytest.mark.parametrize("n", [1, 10, 1000])
def test_mse_matches_torch(formulas, n):
    y, y_hat = rng_for("mse_torch", n).normal(size=(2, n))
    close(formulas.mse(y, y_hat), F.mse_loss(t64(y_hat), t64(y)).item())


LARGE_LOGITS = np.array([-1000.0, -745.0, -710.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 710.0, 745.0, 1000.0])


@reference("sigmoid")
@pytest.mark.parametrize("shape", [(1,), (20,), (4, 6)])
def test_sigmoid_matches_scipy_expit(formulas, shape):
    z = rng_for("sigmoid", shape).normal(scale=5, size=shape)
    close(formulas.sigmoid(z), special.expit(z))


@reference("sigmoid")
def test_sigmoid_large_logits_are_finite_and_warning_free(formulas):
    # pytest turns overflow RuntimeWarnings into errors; atol covers subnormal outputs near −745.
    got = formulas.sigmoid(LARGE_LOGITS)
    assert np.all(np.isfinite(got))
    assert_allclose(got, special.expit(LARGE_LOGITS), rtol=1e-9, atol=1e-300)
    assert got[0] == 0.0 and got[-1] == 1.0


@reference("sigmoid")
@torch_test
def test_sigmoid_matches_torch_including_large_logits(formulas):
    z = np.concatenate([LARGE_LOGITS, rng_for("sigmoid_torch").normal(scale=5, size=30)])
    assert_allclose(formulas.sigmoid(z), to_np(torch.sigmoid(t64(z))), rtol=1e-9, atol=1e-300)


@reference("logistic_regression")
@pytest.mark.parametrize(("n", "d"), XWB_SHAPES)
def test_logistic_regression_matches_sklearn_predict_proba(formulas, n, d):
    X, w, b = _xwb("logreg", n, d)
    model = LogisticRegression()
    model.coef_, model.intercept_, model.classes_ = w[None], np.array([b]), np.array([0, 1])
    close(formulas.logistic_regression(X, w, b), model.predict_proba(X)[:, 1])


@reference("logistic_regression")
@torch_test
@pytest.mark.parametrize(("n", "d"), XWB_SHAPES)
def test_logistic_regression_matches_torch(formulas, n, d):
    X, w, b = _xwb("logreg_torch", n, d)
    expected = torch.sigmoid(F.linear(t64(X), t64(w[None]), t64([b])))[:, 0]
    close(formulas.logistic_regression(X, w, b), to_np(expected))


@reference("binary_cross_entropy")
@pytest.mark.parametrize("n", [2, 10, 500])
def test_binary_cross_entropy_matches_sklearn_log_loss(formulas, n):
    rng = rng_for("bce", n)
    y = rng.permutation(np.arange(n) % 2)  # both classes present
    y_hat = rng.uniform(0.01, 0.99, size=n)  # ε = 1e-12 clipping is then 1e-10 relative at most
    close(formulas.binary_cross_entropy(y, y_hat), skm.log_loss(y, y_hat, labels=[0, 1]))


@reference("binary_cross_entropy")
def test_binary_cross_entropy_of_saturated_probabilities_is_finite(formulas):
    # Probabilities from logits ±1000 are exactly 0.0 and 1.0: log(0) must not happen.
    y_hat = special.expit(np.array([1000.0, -1000.0, 1000.0, -1000.0]))
    right = float(formulas.binary_cross_entropy([1, 0], y_hat[:2]))
    wrong = float(formulas.binary_cross_entropy([0, 1], y_hat[2:]))
    assert right == pytest.approx(0.0, abs=1e-9)
    # −log ε per sample; rel 1e-3 allows clipping at 1 − ε, where 1 − (1 − 1e-12) ≠ 1e-12 in floats.
    assert wrong == pytest.approx(-math.log(1e-12), rel=1e-3)


@reference("binary_cross_entropy")
@torch_test
@pytest.mark.parametrize("n", [1, 10, 500])
def test_binary_cross_entropy_matches_torch_with_soft_targets(formulas, n):
    rng = rng_for("bce_torch", n)
    y, y_hat = rng.uniform(size=n), rng.uniform(0.01, 0.99, size=n)
    close(formulas.binary_cross_entropy(y, y_hat), F.binary_cross_entropy(t64(y_hat), t64(y)).item())


def _one_hot(labels, k):
    return np.eye(k)[labels]


@reference("cross_entropy")
@pytest.mark.parametrize(("n", "k"), [(1, 2), (8, 3), (100, 10)])
def test_cross_entropy_rows_average_like_sklearn_log_loss(formulas, n, k):
    rng = rng_for("ce", n, k)
    labels = rng.integers(0, k, size=n)
    y_hat = rng.dirichlet(np.full(k, 5.0), size=n)  # probabilities ≥ ~1e-3: far above the clip at ε = 1e-12
    expected = skm.log_loss(labels, y_hat, labels=np.arange(k))
    close(formulas.cross_entropy(_one_hot(labels, k), y_hat), expected)


@reference("cross_entropy")
def test_cross_entropy_one_dimensional_input_sums_over_classes(formulas):
    y, y_hat = np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.7, 0.1])
    assert float(formulas.cross_entropy(y, y_hat)) == pytest.approx(-math.log(0.7), rel=1e-8)
    # Soft labels: the whole sum, against scipy's cross-entropy H(p, q) = H(p) + KL(p ‖ q).
    p = np.array([0.3, 0.5, 0.2])
    expected = stats.entropy(p) + stats.entropy(p, y_hat)
    assert float(formulas.cross_entropy(p, y_hat)) == pytest.approx(expected, rel=1e-8)


@reference("cross_entropy")
def test_cross_entropy_with_zero_probability_is_finite(formulas):
    got = float(formulas.cross_entropy(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [0.5, 0.5]])))
    assert math.isfinite(got)
    # ŷ = 0 is clipped to ε = 1e-12, as binary_cross_entropy does: −log ε = 27.63 for the first row.
    assert got == pytest.approx((-math.log(1e-12) - math.log(0.5)) / 2, rel=1e-12)
    # Same ε, same clip for both losses: a sure-wrong prediction costs −log 1e-12 = 27.631 in each.
    assert float(formulas.cross_entropy([1.0, 0.0], [0.0, 1.0])) == pytest.approx(-math.log(1e-12), rel=1e-12)
    assert float(formulas.binary_cross_entropy([1.0], [0.0])) == pytest.approx(-math.log(1e-12), rel=1e-12)


@reference("cross_entropy")
@torch_test
@pytest.mark.parametrize(("batch", "k"), [(None, 4), (1, 3), (16, 5)])
def test_cross_entropy_matches_torch_soft_targets(formulas, batch, k):
    # torch F.cross_entropy takes logits; log-probabilities are logits whose log-softmax is themselves.
    rng = rng_for("ce_torch", batch, k)
    shape = (k,) if batch is None else (batch, k)
    y = rng.dirichlet(np.ones(k), size=shape[:-1] or None)
    y_hat = rng.dirichlet(np.full(k, 5.0), size=shape[:-1] or None)
    expected = F.cross_entropy(torch.log(t64(y_hat)), t64(y)).item()
    close(formulas.cross_entropy(y, y_hat), expected)


@reference("l1_penalty")
@pytest.mark.parametrize(("shape", "lam"), [((1,), 0.5), ((10,), 0.01), ((4, 3), 2.0)])
def test_l1_penalty_is_lambda_times_scipy_l1_norm(formulas, shape, lam):
    w = rng_for("l1", shape).normal(size=shape)
    close(formulas.l1_penalty(w, lam), lam * linalg.norm(w.ravel(), 1))
    assert float(formulas.l1_penalty(np.zeros(shape), lam)) == 0.0


@reference("l2_penalty")
@pytest.mark.parametrize(("shape", "lam"), [((1,), 0.5), ((10,), 0.01), ((4, 3), 2.0)])
def test_l2_penalty_is_lambda_times_squared_scipy_norm(formulas, shape, lam):
    # The YAML's convention is λ‖w‖² (scikit-learn Ridge's α‖w‖²), not (λ/2)‖w‖².
    w = rng_for("l2pen", shape).normal(size=shape)
    close(formulas.l2_penalty(w, lam), lam * linalg.norm(w.ravel()) ** 2)


@reference("l1_penalty", "l2_penalty")
@torch_test
def test_penalty_gradients_match_torch_autograd(formulas):
    # d/dw of λ‖w‖₁ is λ·sign(w); of λ‖w‖² is 2λw. Finite differences of our penalties vs autograd.
    w, lam, h = rng_for("pen_torch").normal(size=6), 0.3, 1e-6
    for fn, torch_fn in [(formulas.l1_penalty, lambda v: lam * v.abs().sum()),
                         (formulas.l2_penalty, lambda v: lam * (v**2).sum())]:
        wt = t64(w).requires_grad_()
        torch_fn(wt).backward()
        numeric = [(fn(w + h * e, lam) - fn(w - h * e, lam)) / (2 * h) for e in np.eye(6)]
        assert_allclose(numeric, to_np(wt.grad), rtol=1e-7, atol=1e-8)
        close(fn(w, lam), torch_fn(t64(w)).item())


@reference("entropy")
@pytest.mark.parametrize("k", [2, 5, 50])
@pytest.mark.parametrize("base", [2, math.e, 10])
def test_entropy_matches_scipy(formulas, k, base):
    p = rng_for("entropy", k).dirichlet(np.ones(k))
    close(formulas.entropy(p, base=base), stats.entropy(p, base=base))


@reference("entropy")
def test_entropy_edge_cases(formulas):
    assert float(formulas.entropy([0.0, 1.0, 0.0])) == 0.0  # 0·log 0 = 0, without a warning
    close(formulas.entropy([0.5, 0.0, 0.5]), 1.0)
    close(formulas.entropy(np.full(8, 1 / 8)), 3.0)  # uniform over 8: log₂ 8 bits
    close(formulas.entropy([0.25] * 4, base=math.e), math.log(4))


@reference("entropy", "gini")
@pytest.mark.parametrize("k", [2, 3, 7])
def test_entropy_and_gini_equal_sklearn_tree_root_impurity(formulas, k):
    # A fitted tree reports its root impurity; the root holds every label, so it is H or Gini of the
    # class frequencies.
    labels = rng_for("impurity", k).integers(0, k, size=300)
    p = np.bincount(labels, minlength=k) / labels.size
    x = np.arange(labels.size)[:, None]
    for criterion, fn in [("entropy", formulas.entropy), ("gini", formulas.gini)]:
        tree = DecisionTreeClassifier(criterion=criterion, max_depth=1, random_state=0).fit(x, labels)
        close(fn(p), tree.tree_.impurity[0])


@reference("gini")
def test_gini_edge_cases(formulas):
    assert float(formulas.gini([1.0, 0.0])) == 0.0  # pure node
    close(formulas.gini(np.full(4, 0.25)), 0.75)  # uniform over k: 1 − 1/k


def _tree_split_gain(x, labels):
    """Information gain of the root split of a depth-1 entropy tree, from sklearn's impurities."""
    tree = DecisionTreeClassifier(criterion="entropy", max_depth=1, random_state=0).fit(x[:, None], labels)
    t = tree.tree_
    left, right = t.children_left[0], t.children_right[0]
    assert left != -1, "the tree did not split"
    n = t.n_node_samples
    gain = t.impurity[0] - (n[left] * t.impurity[left] + n[right] * t.impurity[right]) / n[0]
    return gain, t.threshold[0]


@reference("information_gain")
@pytest.mark.parametrize("seed", range(4))
def test_information_gain_matches_sklearn_entropy_tree_split(formulas, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=200)
    labels = np.where(rng.random(200) < 0.7, x + rng.integers(0, 2, size=200), rng.integers(0, 3, size=200))
    expected, threshold = _tree_split_gain(x, labels)
    children = [labels[x <= threshold], labels[x > threshold]]
    close(formulas.information_gain(labels, children), expected)


@reference("information_gain")
def test_information_gain_edge_cases_and_three_way_split(formulas):
    parent = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    # A perfect split removes all uncertainty: gain = H(parent).
    pure = [parent[parent == c] for c in range(3)]
    h_parent = stats.entropy(np.bincount(parent), base=2)
    close(formulas.information_gain(parent, pure), h_parent)
    # Children with the parent's class mix gain nothing.
    assert float(formulas.information_gain(np.tile(parent, 2), [parent, parent])) == pytest.approx(0, abs=1e-12)
    # Three uneven children: H(parent) − Σ |Sᵢ|/|S| H(Sᵢ), the entropies from scipy.
    children = [parent[:3], parent[3:4], parent[4:]]
    weighted = sum(len(c) / len(parent) * stats.entropy(np.bincount(c), base=2) for c in children)
    close(formulas.information_gain(parent, children), h_parent - weighted)


# ======================================================================================================
# Metrics
# ======================================================================================================


def _confusion(seed, n):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 2, size=(2, n))
    tp = int(np.sum((y_true == 1) & (y_pred == 1)))
    fp = int(np.sum((y_true == 0) & (y_pred == 1)))
    fn = int(np.sum((y_true == 1) & (y_pred == 0)))
    return y_true, y_pred, tp, fp, fn


@reference("precision", "recall", "f1_score")
@pytest.mark.parametrize(("seed", "n"), [(0, 10), (1, 57), (2, 1000)])
def test_precision_recall_f1_match_sklearn(formulas, seed, n):
    y_true, y_pred, tp, fp, fn = _confusion(seed, n)
    p, r = formulas.precision(tp, fp), formulas.recall(tp, fn)
    close(p, skm.precision_score(y_true, y_pred))
    close(r, skm.recall_score(y_true, y_pred))
    close(formulas.f1_score(p, r), skm.f1_score(y_true, y_pred))


@reference("precision", "recall", "f1_score")
def test_precision_recall_f1_zero_division_like_sklearn(formulas):
    # 0/0 cases give 0.0, as sklearn with zero_division=0.0.
    y_true, no_positives = np.array([0, 1, 0]), np.zeros(3, dtype=int)
    # TP + FP = 0: nothing predicted positive.
    assert formulas.precision(0, 0) == skm.precision_score(y_true, no_positives, zero_division=0.0) == 0.0
    # TP + FN = 0: nothing is truly positive.
    assert formulas.recall(0, 0) == skm.recall_score(no_positives, no_positives, zero_division=0.0) == 0.0
    assert formulas.f1_score(0.0, 0.0) == skm.f1_score(y_true, no_positives, zero_division=0.0) == 0.0


def _ranking_case(kind, n, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3 == 0).astype(int)  # both classes present
    scores = rng.normal(size=n) + y
    if kind == "ties":
        scores = np.round(scores, 0)  # a handful of distinct scores, many ties across classes
    elif kind == "all_tied":
        scores = np.full(n, 0.25)
    elif kind == "perfect":
        scores = y + 0.1 * rng.random(n)
    elif kind == "reversed":
        scores = -y + 0.1 * rng.random(n)
    return y, scores


RANKING_CASES = [(kind, n) for kind in ["random", "ties", "all_tied", "perfect", "reversed"] for n in [6, 200]]


@reference("roc_auc")
@pytest.mark.parametrize(("kind", "n"), RANKING_CASES)
def test_roc_auc_matches_sklearn_and_mann_whitney(formulas, kind, n):
    y, scores = _ranking_case(kind, n, seed=n)
    got = formulas.roc_auc(y, scores)
    close(got, skm.roc_auc_score(y, scores))
    # AUC = U / (n₊ n₋): Mann–Whitney U counts ties as ½.
    u = stats.mannwhitneyu(scores[y == 1], scores[y == 0]).statistic
    close(got, u / (np.sum(y == 1) * np.sum(y == 0)))
    if kind == "all_tied":
        assert float(got) == 0.5


@reference("roc_auc")
@pytest.mark.parametrize("label", [0, 1])
def test_roc_auc_of_one_class_raises_where_sklearn_warns_and_returns_nan(formulas, label):
    # AUC needs a positive and a negative. scikit-learn ≥ 1.6 warns and returns nan (≤ 1.4 raised);
    # the sheet's function raises, as its conventions say.
    y, scores = [label] * 4, [0.1, 0.4, 0.35, 0.8]
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):
        assert math.isnan(skm.roc_auc_score(y, scores))
    with pytest.raises(ValueError, match="both classes"):
        formulas.roc_auc(y, scores)


@reference("average_precision")
@pytest.mark.parametrize(("kind", "n"), RANKING_CASES)
def test_average_precision_matches_sklearn(formulas, kind, n):
    y, scores = _ranking_case(kind, n, seed=n + 1)
    got = formulas.average_precision(y, scores)
    close(got, skm.average_precision_score(y, scores))
    if kind == "all_tied":  # one threshold: precision = prevalence at recall 1
        close(got, y.mean())


# ======================================================================================================
# Neural networks
# ======================================================================================================

ACTIVATION_SHAPES = [(1,), (13,), (4, 5), (2, 3, 4)]


def _with_zeros(key, shape):
    z = rng_for(key, shape).normal(scale=3, size=shape)
    z.flat[::3] = 0.0  # exact zeros: where relu's derivative convention matters
    return z


@reference("relu")
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_relu_equals_half_of_z_plus_abs_z(formulas, shape):
    z = _with_zeros("relu", shape)
    assert_array_equal(formulas.relu(z), (z + np.abs(z)) / 2)  # exact in floating point


@reference("relu")
@torch_test
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_relu_matches_torch(formulas, shape):
    z = _with_zeros("relu_torch", shape)
    assert_array_equal(formulas.relu(z), to_np(torch.relu(t64(z))))


@reference("relu_grad")
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_relu_grad_matches_finite_difference_and_is_zero_at_zero(formulas, shape):
    z = _with_zeros("relu_grad", shape)
    got = formulas.relu_grad(z)
    nonzero = z != 0
    h = 1e-6  # the nonzero draws are far from the kink, so the difference quotient is 0 or 1
    assert np.all(np.abs(z[nonzero]) > h)
    numeric = (np.maximum(z + h, 0) - np.maximum(z - h, 0)) / (2 * h)
    assert_allclose(got[nonzero], numeric[nonzero], rtol=1e-7)
    assert np.all(got[~nonzero] == 0.0)


@reference("relu_grad")
@torch_test
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_relu_grad_matches_torch_autograd(formulas, shape):
    z = _with_zeros("relu_grad_torch", shape)
    zt = t64(z).requires_grad_()
    torch.relu(zt).sum().backward()
    assert_array_equal(formulas.relu_grad(z), to_np(zt.grad))  # torch: 0 at 0, too


@reference("sigmoid_grad")
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_sigmoid_grad_matches_finite_difference_of_expit(formulas, shape):
    z = rng_for("sigmoid_grad", shape).normal(scale=3, size=shape)
    h = 1e-6
    numeric = (special.expit(z + h) - special.expit(z - h)) / (2 * h)
    assert_allclose(formulas.sigmoid_grad(z), numeric, rtol=1e-7, atol=1e-10)


@reference("sigmoid_grad")
def test_sigmoid_grad_large_logits_are_finite(formulas):
    got = formulas.sigmoid_grad(LARGE_LOGITS)
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    assert got[0] == pytest.approx(0.0, abs=1e-300) and got[-1] == pytest.approx(0.0, abs=1e-300)
    assert got[LARGE_LOGITS == 0.0][0] == 0.25


@reference("sigmoid_grad")
@torch_test
def test_sigmoid_grad_matches_torch_autograd(formulas):
    z = np.concatenate([LARGE_LOGITS, rng_for("sigmoid_grad_torch").normal(scale=4, size=40)])
    zt = t64(z).requires_grad_()
    torch.sigmoid(zt).sum().backward()
    assert_allclose(formulas.sigmoid_grad(z), to_np(zt.grad), rtol=1e-9, atol=1e-300)


SOFTMAX_CASES = [((5,), -1), ((3, 4), -1), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1), ((2, 3, 4), -1)]


@reference("softmax")
@pytest.mark.parametrize(("shape", "axis"), SOFTMAX_CASES)
def test_softmax_matches_scipy(formulas, shape, axis):
    z = rng_for("softmax", shape, axis).normal(scale=3, size=shape)
    got = formulas.softmax(z, axis=axis)
    close(got, special.softmax(z, axis=axis))
    close(np.sum(got, axis=axis), 1.0)


@reference("softmax")
def test_softmax_of_large_logits_is_finite_and_matches_scipy(formulas):
    z = np.array([[1000.0, 1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0, -1000.0], [1000.0, 0.0, 1.0, 2.0]])
    for axis in (-1, 0):
        got = formulas.softmax(z, axis=axis)
        assert np.all(np.isfinite(got))
        assert_allclose(got, special.softmax(z, axis=axis), rtol=1e-9, atol=1e-300)
    assert_allclose(formulas.softmax(z)[0], [0.5, 0.5, 0.0, 0.0], atol=1e-300)
    # Default axis is the last one.
    close(formulas.softmax(z[2]), special.softmax(z[2]))


@reference("softmax")
@torch_test
@pytest.mark.parametrize(("shape", "axis"), SOFTMAX_CASES)
def test_softmax_matches_torch(formulas, shape, axis):
    z = rng_for("softmax_torch", shape, axis).normal(scale=300, size=shape)  # logits in the hundreds
    assert_allclose(formulas.softmax(z, axis=axis), to_np(torch.softmax(t64(z), dim=axis)), rtol=1e-9,
                    atol=1e-300)


INIT_SIZES = [(300, 500), (784, 128)]  # n_in, n_out; ≥ 1e5 draws each


def _check_normal_sample(w, std, label):
    """Sample mean and std of N = w.size draws against N(0, std²), at 5 standard errors."""
    n = w.size
    assert abs(w.mean()) < 5 * std / math.sqrt(n), f"{label}: mean {w.mean()}"
    # The sample std of normal data has standard error ≈ std / √(2N).
    assert abs(w.std() - std) < 5 * std / math.sqrt(2 * n), f"{label}: std {w.std()} vs {std}"
    # Shape of the distribution, not only its moments (a fixed seed makes this deterministic).
    assert stats.kstest(w.ravel(), "norm", args=(0.0, std)).pvalue > 1e-3, label


@reference("xavier_normal")
@pytest.mark.parametrize(("n_in", "n_out"), INIT_SIZES)
def test_xavier_normal_shape_and_sample_std(formulas, n_in, n_out):
    w = formulas.xavier_normal(n_in, n_out, np.random.default_rng(0))
    assert w.shape == (n_out, n_in)
    _check_normal_sample(w, math.sqrt(2.0 / (n_in + n_out)), "xavier_normal")


@reference("he_normal")
@pytest.mark.parametrize(("n_in", "n_out"), INIT_SIZES)
def test_he_normal_shape_and_sample_std(formulas, n_in, n_out):
    w = formulas.he_normal(n_in, n_out, np.random.default_rng(0))
    assert w.shape == (n_out, n_in)
    _check_normal_sample(w, math.sqrt(2.0 / n_in), "he_normal")


@reference("xavier_normal", "he_normal")
def test_initialisers_draw_from_the_given_rng(formulas):
    for init in (formulas.xavier_normal, formulas.he_normal):
        a = init(3, 7, np.random.default_rng(42))
        assert a.shape == (7, 3)
        assert_array_equal(a, init(3, 7, np.random.default_rng(42)))
        assert not np.array_equal(a, init(3, 7, np.random.default_rng(43)))


@reference("xavier_normal", "he_normal")
@torch_test
@pytest.mark.parametrize(("n_in", "n_out"), INIT_SIZES)
def test_initialisers_match_torch_init_statistics(formulas, n_in, n_out):
    # torch weights are (out, in): fan_in = n_in, fan_out = n_out, as ours.
    torch.manual_seed(0)
    torch_xavier = torch.nn.init.xavier_normal_(torch.empty(n_out, n_in, dtype=torch.float64))
    torch_he = torch.nn.init.kaiming_normal_(torch.empty(n_out, n_in, dtype=torch.float64),
                                             mode="fan_in", nonlinearity="relu")
    ours = {"xavier": formulas.xavier_normal(n_in, n_out, np.random.default_rng(1)),
            "he": formulas.he_normal(n_in, n_out, np.random.default_rng(1))}
    for name, theirs in [("xavier", to_np(torch_xavier)), ("he", to_np(torch_he))]:
        assert ours[name].shape == theirs.shape
        # Two independent sample stds, each with standard error std/√(2N): the difference has std/√N; allow 5.
        assert abs(ours[name].std() - theirs.std()) < 5 * theirs.std() / math.sqrt(ours[name].size), name
        assert stats.ks_2samp(ours[name].ravel(), theirs.ravel()).pvalue > 1e-3, name


BN_CASES = [(2, 1, 1e-5), (8, 3, 1e-5), (64, 16, 1e-3)]


@reference("batch_norm")
@pytest.mark.parametrize(("n", "d", "eps"), BN_CASES)
def test_batch_norm_output_moments_are_beta_and_scaled_gamma(formulas, n, d, eps):
    rng = rng_for("bn", n, d)
    x, gamma, beta = rng.normal(2, 3, size=(n, d)), rng.normal(size=d), rng.normal(size=d)
    out = formulas.batch_norm(x, gamma, beta, eps=eps)
    assert out.shape == (n, d)
    # Per feature the output has mean β and (biased) std |γ|·σ/√(σ² + ε).
    var = np.array([statistics.pvariance(col) for col in x.T])
    close(out.mean(axis=0), beta)
    close(out.std(axis=0), np.abs(gamma) * np.sqrt(var / (var + eps)))


@reference("batch_norm")
@torch_test
@pytest.mark.parametrize(("n", "d", "eps"), BN_CASES)
def test_batch_norm_matches_torch_training_mode(formulas, n, d, eps):
    rng = rng_for("bn_torch", n, d)
    x, gamma, beta = rng.normal(2, 3, size=(n, d)), rng.normal(size=d), rng.normal(size=d)
    expected = F.batch_norm(t64(x), None, None, weight=t64(gamma), bias=t64(beta), training=True, eps=eps)
    close(formulas.batch_norm(x, gamma, beta, eps=eps), to_np(expected))
    if eps == 1e-5:  # the default ε is torch's
        close(formulas.batch_norm(x, gamma, beta), to_np(expected))


@reference("batch_norm")
@torch_test
def test_batch_norm_on_conv_maps_per_channel_like_batchnorm2d(formulas):
    # The conventions' recipe for (N, C, H, W): channels last, flatten N·H·W rows, normalise, put back.
    # BatchNorm2d keeps one mean and variance per channel over axes (0, 2, 3).
    n, c, h, w = 3, 4, 5, 2
    rng = rng_for("bn_conv")
    x, gamma, beta = rng.normal(1, 2, size=(n, c, h, w)), rng.normal(size=c), rng.normal(size=c)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, c)
    got = formulas.batch_norm(rows, gamma, beta).reshape(n, h, w, c).transpose(0, 3, 1, 2)
    bn = torch.nn.BatchNorm2d(c).double().train()
    with torch.no_grad():
        bn.weight.copy_(t64(gamma))
        bn.bias.copy_(t64(beta))
    close(got, to_np(bn(t64(x))))


@reference("dropout")
def test_dropout_with_p_zero_is_identity(formulas):
    x = rng_for("dropout0").normal(size=(4, 5))
    assert_array_equal(formulas.dropout(x, 0.0, np.random.default_rng(0)), x)


@reference("dropout")
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_one_minus_p_and_scales_kept_units(formulas, p):
    x = rng_for("dropout", p).normal(size=(400, 500))  # no exact zeros
    out = formulas.dropout(x, p, np.random.default_rng(0))
    assert out.shape == x.shape
    kept = out != 0
    n = x.size
    # Kept fraction ~ Binomial(N, 1 − p)/N: standard error √(p(1 − p)/N); allow 5.
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    close(out[kept], x[kept] / (1 - p))  # inverted dropout


@reference("dropout")
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_is_unbiased(formulas, p):
    # E[dropout(x)] = x: average 20,000 independent masks of the same row.
    x_row = np.array([1.0, -2.0, 0.5, 3.0, -0.25])
    out = formulas.dropout(np.tile(x_row, (20_000, 1)), p, np.random.default_rng(1))
    # Each output is x/(1 − p) with probability 1 − p: std |x|·√(p/(1 − p)); allow 5 standard errors.
    se = np.abs(x_row) * math.sqrt(p / (1 - p)) / math.sqrt(out.shape[0])
    assert np.all(np.abs(out.mean(axis=0) - x_row) < 5 * se)


@reference("dropout")
@torch_test
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_matches_torch_scale_and_keep_rate(formulas, p):
    torch.manual_seed(0)
    n = 200_000
    theirs = to_np(F.dropout(torch.ones(n, dtype=torch.float64), p=p, training=True))
    ours = formulas.dropout(np.ones(n), p, np.random.default_rng(0))
    assert_allclose(np.unique(ours[ours != 0]), np.unique(theirs[theirs != 0]), rtol=1e-12)
    # Two independent keep rates: difference has standard error √(2p(1 − p)/N); allow 5.
    assert abs((ours != 0).mean() - (theirs != 0).mean()) < 5 * math.sqrt(2 * p * (1 - p) / n)


DENSE_CASES = [((4,), 4, 2), ((5, 3), 3, 4), ((1, 6), 6, 1), ((2, 4, 3), 3, 2)]  # x shape, n_in, n_out


def _dense_case(key, x_shape, n_in, n_out):
    rng = rng_for(key, x_shape, n_out)
    x = rng.normal(size=x_shape)
    W, b = rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)
    grad_a = rng.normal(size=(*x_shape[:-1], n_out))
    return x, W, b, grad_a


@reference("dense_forward", "dense_backward")
@pytest.mark.parametrize(("x_shape", "n_in", "n_out"), DENSE_CASES)
def test_dense_layer_against_scipy_and_finite_differences(formulas, x_shape, n_in, n_out):
    # Forward: a = σ(x Wᵀ + b) with scipy's expit. Backward: gradients of L = Σ grad_a ⊙ a by central
    # differences in every parameter and input.
    x, W, b, grad_a = _dense_case("dense", x_shape, n_in, n_out)
    a, z = formulas.dense_forward(x, W, b)
    close(z, x @ W.T + b)
    close(a, special.expit(x @ W.T + b))

    def loss(x_, W_, b_):
        return float(np.sum(grad_a * special.expit(x_ @ W_.T + b_)))

    def numeric_grad(arr, f):
        g, h = np.zeros_like(arr), 1e-6
        for i in np.ndindex(arr.shape):
            e = np.zeros_like(arr)
            e[i] = h
            g[i] = (f(arr + e) - f(arr - e)) / (2 * h)
        return g

    dW, db, dx = formulas.dense_backward(x, W, b, grad_a)
    assert_allclose(dW, numeric_grad(W, lambda W_: loss(x, W_, b)), rtol=1e-6, atol=1e-8)
    assert_allclose(db, numeric_grad(b, lambda b_: loss(x, W, b_)), rtol=1e-6, atol=1e-8)
    assert_allclose(dx, numeric_grad(x, lambda x_: loss(x_, W, b)), rtol=1e-6, atol=1e-8)


@reference("dense_forward", "dense_backward")
@torch_test
@pytest.mark.parametrize(("x_shape", "n_in", "n_out"), DENSE_CASES)
def test_dense_layer_matches_torch_linear_sigmoid_autograd(formulas, x_shape, n_in, n_out):
    x, W, b, grad_a = _dense_case("dense_torch", x_shape, n_in, n_out)
    layer = torch.nn.Linear(n_in, n_out).double()
    with torch.no_grad():
        layer.weight.copy_(t64(W))
        layer.bias.copy_(t64(b))
    xt = t64(x).requires_grad_()
    zt = layer(xt)
    at = torch.sigmoid(zt)
    at.backward(t64(grad_a))  # upstream gradient dL/da = grad_a
    a, z = formulas.dense_forward(x, W, b)
    close(z, to_np(zt))
    close(a, to_np(at))
    dW, db, dx = formulas.dense_backward(x, W, b, grad_a)
    close(dW, to_np(layer.weight.grad))
    close(db, to_np(layer.bias.grad))
    close(dx, to_np(xt.grad))


# ======================================================================================================
# Optimization
# ======================================================================================================


def _optimizer_trace(opt_cls, theta0, grads, state_keys=(), **kwargs):
    """θ (and optimizer state) after each of several torch steps with the given gradients."""
    p = t64(theta0).requires_grad_()
    opt = opt_cls([p], foreach=False, **kwargs)
    trace = []
    for g in grads:
        p.grad = t64(g)
        opt.step()
        trace.append((to_np(p).copy(), *(to_np(opt.state[p][k]).copy() for k in state_keys)))
    return trace


OPT_SHAPES = [(1,), (5,), (3, 4)]


@reference("sgd_step")
@torch_test
@pytest.mark.parametrize("shape", OPT_SHAPES)
def test_sgd_step_matches_torch_sgd_over_five_steps(formulas, shape):
    rng = rng_for("sgd", shape)
    theta, grads, lr = rng.normal(size=shape), rng.normal(size=(5, *shape)), 0.05
    for g, (expected,) in zip(grads, _optimizer_trace(torch.optim.SGD, theta, grads, lr=lr), strict=True):
        theta = formulas.sgd_step(theta, g, lr)
        close(theta, expected)


@reference("momentum_step")
@torch_test
@pytest.mark.parametrize("shape", OPT_SHAPES)
@pytest.mark.parametrize("beta", [0.9, 0.5])
def test_momentum_step_matches_torch_sgd_momentum_over_five_steps(formulas, shape, beta):
    rng = rng_for("momentum", shape, beta)
    theta, grads, lr = rng.normal(size=shape), rng.normal(size=(5, *shape)), 0.05
    v = np.zeros(shape)
    trace = _optimizer_trace(torch.optim.SGD, theta, grads, ("momentum_buffer",), lr=lr, momentum=beta)
    for g, (expected_theta, expected_v) in zip(grads, trace, strict=True):
        theta, v = formulas.momentum_step(theta, v, g, lr, beta=beta)
        close(theta, expected_theta)
        close(v, expected_v)


ADAM_CASES = {
    "defaults": ({}, 1.0),
    "custom": ({"lr": 0.1, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, 1.0),
    # Gradients near ε: ε inside the root (√(v̂ + ε)) or scaled (Keras' ε̂) would change the step by orders.
    "tiny_gradients": ({}, 1e-9),
}


def _adam_step_ours(formulas, theta, grads, hyper):
    """Trace of our adam_step over len(grads) steps, t from 1."""
    m, v, trace = np.zeros_like(theta), np.zeros_like(theta), []
    for t, g in enumerate(grads, start=1):
        theta, m, v = formulas.adam_step(theta, g, m, v, t, **hyper)
        trace.append((theta, m, v))
    return trace


@reference("adam_step")
@torch_test
@pytest.mark.parametrize("shape", OPT_SHAPES)
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_step_matches_torch_adam_over_six_steps(formulas, shape, case):
    hyper, grad_scale = ADAM_CASES[case]
    rng = rng_for("adam", shape, case)
    theta, grads = rng.normal(size=shape), rng.normal(size=(6, *shape)) * grad_scale
    torch_kwargs = {"lr": hyper.get("lr", 1e-3), "betas": (hyper.get("beta1", 0.9), hyper.get("beta2", 0.999)),
                    "eps": hyper.get("eps", 1e-8)}
    trace = _optimizer_trace(torch.optim.Adam, theta, grads, ("exp_avg", "exp_avg_sq"), **torch_kwargs)
    for (theta_t, m, v), (e_theta, e_m, e_v) in zip(_adam_step_ours(formulas, theta, grads, hyper), trace,
                                                    strict=True):
        close(theta_t, e_theta)
        close(m, e_m)
        assert_allclose(v, e_v, rtol=1e-9, atol=0)  # v ~ g² can be 1e-21: relative only


# ======================================================================================================
# CNNs
# ======================================================================================================

# (W, K, P, S): several where the floor in ⌊(W − K + 2P)/S⌋ + 1 drops a remainder.
CONV_SIZES = [(7, 3, 0, 2), (8, 3, 0, 2), (8, 3, 1, 2), (5, 5, 0, 1), (224, 7, 3, 2), (32, 3, 1, 1),
              (10, 4, 2, 3), (11, 2, 0, 4), (6, 1, 0, 5), (28, 5, 2, 1), (9, 3, 2, 4)]


@reference("conv_output_size")
@torch_test
@pytest.mark.parametrize(("w", "k", "p", "s"), CONV_SIZES)
def test_conv_output_size_matches_torch_conv2d_output_shape(formulas, w, k, p, s):
    x = torch.zeros(1, 1, w, w + 3, dtype=torch.float64)  # non-square: height and width separately
    out = F.conv2d(x, torch.zeros(1, 1, k, k, dtype=torch.float64), stride=s, padding=p)
    got = formulas.conv_output_size(w, k, p, s)
    assert type(got) is int
    assert got == out.shape[-2]
    assert formulas.conv_output_size(w + 3, k, p=p, s=s) == out.shape[-1]


@reference("conv_output_size")
def test_conv_output_size_default_stride_and_padding(formulas):
    assert formulas.conv_output_size(5, 3) == 3  # "valid" convolution: W − K + 1
    assert formulas.conv_output_size(7, 3, p=1) == 7  # "same" with stride 1 and P = (K − 1)/2


@reference("conv_params")
@torch_test
@pytest.mark.parametrize(("k", "c_in", "c_out"), [(3, 3, 64), (1, 64, 256), (5, 16, 8), (7, 1, 1)])
def test_conv_params_matches_torch_conv2d_parameter_count(formulas, k, c_in, c_out):
    conv = torch.nn.Conv2d(c_in, c_out, k)  # bias=True, as the YAML's formula (+ C_out)
    assert formulas.conv_params(k, c_in, c_out) == sum(p.numel() for p in conv.parameters())


def _mlp_block(W, b):
    """A small residual branch f(x) = relu(x Wᵀ + b), written in NumPy."""
    return lambda x: np.maximum(x @ W.T + b, 0.0)


@reference("residual")
@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 6)])
def test_residual_adds_the_identity_shortcut(formulas, shape):
    rng = rng_for("residual", shape)
    x = rng.normal(size=shape)
    # A zero branch leaves x unchanged (the block can learn the identity), whatever the shape.
    close(formulas.residual(x, np.zeros_like), x)
    # A branch that returns -x cancels the shortcut exactly.
    close(formulas.residual(x, np.negative), np.zeros(shape))


@reference("residual")
@torch_test
@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 6)])
def test_residual_matches_torch_block(formulas, shape):
    rng = rng_for("residual_torch", shape)
    x, W, b = rng.normal(size=shape), rng.normal(size=(6, 6)), rng.normal(size=6)
    layer = torch.nn.Linear(6, 6).double()
    with torch.no_grad():
        layer.weight.copy_(t64(W))
        layer.bias.copy_(t64(b))
    xt = t64(x)
    close(formulas.residual(x, _mlp_block(W, b)), to_np(xt + torch.relu(layer(xt))))


CONV1X1_SHAPES = [((3, 4, 5), 2), ((1, 1, 1), 4), ((2, 3, 4, 5), 6)]  # x shape, C_out


@reference("conv1x1")
@pytest.mark.parametrize(("x_shape", "c_out"), CONV1X1_SHAPES)
def test_conv1x1_is_a_dense_layer_at_every_pixel(formulas, x_shape, c_out):
    rng = rng_for("conv1x1", x_shape, c_out)
    x, W = rng.normal(size=x_shape), rng.normal(size=(c_out, x_shape[-3]))
    got = formulas.conv1x1(x, W)
    assert got.shape == (*x_shape[:-3], c_out, *x_shape[-2:])
    for index in np.ndindex(*x_shape[:-3], *x_shape[-2:]):
        *batch, i, j = index
        close(got[(*batch, slice(None), i, j)], W @ x[(*batch, slice(None), i, j)])


@reference("conv1x1")
@torch_test
@pytest.mark.parametrize(("x_shape", "c_out"), CONV1X1_SHAPES)
def test_conv1x1_matches_torch_conv2d(formulas, x_shape, c_out):
    rng = rng_for("conv1x1_torch", x_shape, c_out)
    x, W = rng.normal(size=x_shape), rng.normal(size=(c_out, x_shape[-3]))
    expected = F.conv2d(t64(x), t64(W[:, :, None, None]))  # conv2d accepts (C, H, W) and (N, C, H, W)
    close(formulas.conv1x1(x, W), to_np(expected))


# ======================================================================================================
# RNNs
# ======================================================================================================

RNN_SHAPES = [(None, 3, 4), (1, 5, 2), (6, 4, 8)]  # batch (None = unbatched), input size, hidden size


@reference("rnn_cell")
@torch_test
@pytest.mark.parametrize(("batch", "n_in", "n_hidden"), RNN_SHAPES)
@pytest.mark.parametrize("nonzero_h", [False, True])
def test_rnn_cell_matches_torch_rnncell(formulas, batch, n_in, n_hidden, nonzero_h):
    torch.manual_seed(0)
    cell = torch.nn.RNNCell(n_in, n_hidden).double()
    rng = rng_for("rnn", batch, n_in, nonzero_h)
    lead = () if batch is None else (batch,)
    x = rng.normal(size=(*lead, n_in))
    h = rng.normal(size=(*lead, n_hidden)) if nonzero_h else np.zeros((*lead, n_hidden))
    expected = cell(t64(x), t64(h))
    weights = [to_np(w) for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    close(formulas.rnn_cell(x, h, *weights), to_np(expected))


@reference("lstm_cell")
@torch_test
@pytest.mark.parametrize(("batch", "n_in", "n_hidden"), RNN_SHAPES)
def test_lstm_cell_matches_torch_lstmcell(formulas, batch, n_in, n_hidden):
    torch.manual_seed(1)
    cell = torch.nn.LSTMCell(n_in, n_hidden).double()
    with torch.no_grad():  # larger weights than the default init, so every gate saturates somewhere
        for p in cell.parameters():
            p.mul_(4)
    rng = rng_for("lstm", batch, n_in)
    lead = () if batch is None else (batch,)
    x, h, c = rng.normal(size=(*lead, n_in)), rng.normal(size=(*lead, n_hidden)), rng.normal(size=(*lead, n_hidden))
    h_t, c_t = cell(t64(x), (t64(h), t64(c)))
    weights = [to_np(w) for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    got_h, got_c = formulas.lstm_cell(x, h, c, *weights)
    close(got_h, to_np(h_t))
    close(got_c, to_np(c_t))


# ======================================================================================================
# Transformers
# ======================================================================================================


def _attention_by_loops(Q, K, V, mask=None):
    """softmax(q·kⱼ/√d over keys j) · V for each query separately, with scipy's softmax (2-D inputs)."""
    out = np.empty((Q.shape[0], V.shape[1]))
    for i, q in enumerate(Q):
        scores = K @ q / math.sqrt(Q.shape[1])
        if mask is not None:
            scores = np.where(mask[i], scores, -np.inf)
        out[i] = special.softmax(scores) @ V
    return out


@reference("attention")
@pytest.mark.parametrize(("n_q", "n_k", "d_k", "d_v"), [(1, 1, 4, 4), (3, 5, 4, 2), (6, 6, 8, 8)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_per_query_scipy_softmax(formulas, n_q, n_k, d_k, d_v, masked):
    rng = rng_for("attn", n_q, n_k, d_k, masked)
    Q, K, V = rng.normal(size=(n_q, d_k)), rng.normal(size=(n_k, d_k)), rng.normal(size=(n_k, d_v))
    mask = np.tril(np.ones((n_q, n_k), dtype=bool), k=n_k - n_q) if masked else None  # causal
    close(formulas.attention(Q, K, V, mask=mask), _attention_by_loops(Q, K, V, mask))


@reference("attention")
def test_attention_with_large_scores_is_finite(formulas):
    rng = rng_for("attn_large")
    Q, K, V = rng.normal(size=(3, 4)) * 1000, rng.normal(size=(5, 4)) * 1000, rng.normal(size=(5, 2))
    got = formulas.attention(Q, K, V)
    assert np.all(np.isfinite(got))
    close(got, _attention_by_loops(Q, K, V))


ATTENTION_CASES = [((), 3, 4, 5, 2), ((2,), 4, 4, 8, 8), ((2, 3), 4, 6, 5, 7)]  # batch, L, S, d_k, d_v


@reference("attention")
@torch_test
@pytest.mark.parametrize(("batch", "n_q", "n_k", "d_k", "d_v"), ATTENTION_CASES)
@pytest.mark.parametrize("mask_kind", ["none", "causal", "random_batched"])
def test_attention_matches_torch_sdpa(formulas, batch, n_q, n_k, d_k, d_v, mask_kind):
    rng = rng_for("attn_torch", batch, n_q, mask_kind)
    Q, K, V = (rng.normal(size=(*batch, n_q, d_k)), rng.normal(size=(*batch, n_k, d_k)),
               rng.normal(size=(*batch, n_k, d_v)))
    mask = None
    if mask_kind == "causal":
        mask = np.tril(np.ones((n_q, n_k), dtype=bool), k=n_k - n_q)
    elif mask_kind == "random_batched":  # a mask per batch element, broadcast against the heads
        mask = rng.random((*batch, n_q, n_k)) < 0.5
        mask[..., 0] = True  # no fully masked query row: test_attention_fully_masked_row_is_zero_like_torch
    expected = F.scaled_dot_product_attention(t64(Q), t64(K), t64(V),
                                              attn_mask=None if mask is None else torch.tensor(mask))
    close(formulas.attention(Q, K, V, mask=mask), to_np(expected))


@reference("attention")
@torch_test
def test_attention_fully_masked_row_is_zero_like_torch(formulas):
    # The sheet's convention: a query that may attend to no key gets zeros, as torch SDPA since 2.5 (its
    # _safe_softmax); older torch returned nan. The other rows are ordinary attention.
    rng = rng_for("attn_fully_masked")
    Q, K, V = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    mask = rng.random((3, 5)) < 0.6
    mask[0] = True
    mask[1] = False
    got = formulas.attention(Q, K, V, mask=mask)
    assert got[1].tolist() == [0.0, 0.0]
    expected = F.scaled_dot_product_attention(t64(Q), t64(K), t64(V), attn_mask=torch.tensor(mask))
    close(got, to_np(expected))


@reference("multi_head_attention")
@torch_test
@pytest.mark.parametrize(("n_q", "n_kv", "embed", "heads"), [(4, 6, 8, 2), (3, 3, 12, 4), (5, 2, 6, 1)])
@pytest.mark.parametrize("self_attention", [False, True])
def test_multi_head_attention_matches_torch(formulas, n_q, n_kv, embed, heads, self_attention):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(embed, heads, bias=False, batch_first=True).double()
    W_q, W_k, W_v = (to_np(w) for w in mha.in_proj_weight.chunk(3))
    W_o = to_np(mha.out_proj.weight)
    rng = rng_for("mha", n_q, embed, heads, self_attention)
    q = rng.normal(size=(n_q, embed))
    k, v = (q, q) if self_attention else (rng.normal(size=(n_kv, embed)), rng.normal(size=(n_kv, embed)))
    expected, _ = mha(t64(q)[None], t64(k)[None], t64(v)[None], need_weights=False)
    close(formulas.multi_head_attention(q, k, v, W_q, W_k, W_v, W_o, heads), to_np(expected[0]))


@reference("multi_head_attention")
def test_multi_head_attention_with_one_head_is_projected_attention(formulas):
    # h = 1: MHA(q, k, v) = attention(q W_qᵀ, k W_kᵀ, v W_vᵀ) W_oᵀ, the attention from per-query loops.
    rng = rng_for("mha_one_head")
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    W_q, W_k, W_v, W_o = rng.normal(size=(4, 4, 4))
    expected = _attention_by_loops(q @ W_q.T, k @ W_k.T, v @ W_v.T) @ W_o.T
    close(formulas.multi_head_attention(q, k, v, W_q, W_k, W_v, W_o, 1), expected)


def _positional_encoding_by_loops(n_positions, d_model):
    """Vaswani et al. §3.5, one entry at a time: PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos."""
    pe = np.empty((n_positions, d_model))
    for pos in range(n_positions):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            pe[pos, 2 * i], pe[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return pe


@reference("positional_encoding")
@pytest.mark.parametrize(("n_positions", "d_model"), [(1, 2), (10, 16), (50, 128)])
def test_positional_encoding_matches_the_paper_entry_by_entry(formulas, n_positions, d_model):
    got = formulas.positional_encoding(n_positions, d_model)
    assert got.shape == (n_positions, d_model)
    close(got, _positional_encoding_by_loops(n_positions, d_model))


@reference("positional_encoding")
@torch_test
def test_positional_encoding_matches_the_pytorch_tutorial_form(formulas):
    # The PyTorch tutorial computes 1/10000^(2i/d) as exp(2i · (−ln 10000 / d)).
    n, d = 60, 32
    position = torch.arange(n, dtype=torch.float64)[:, None]
    div_term = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    close(formulas.positional_encoding(n, d), to_np(pe))


# ======================================================================================================
# NLP and recommender systems
# ======================================================================================================


@reference("perplexity")
@pytest.mark.parametrize("n", [1, 10, 300])
def test_perplexity_is_inverse_geometric_mean_probability(formulas, n):
    p = rng_for("ppl", n).uniform(0.01, 1.0, size=n)
    close(formulas.perplexity(np.log(p)), 1.0 / stats.gmean(p))


@reference("perplexity")
def test_perplexity_of_uniform_model_is_vocabulary_size(formulas):
    close(formulas.perplexity(np.full(7, -math.log(50))), 50.0)


@reference("perplexity")
@torch_test
@pytest.mark.parametrize(("n", "vocab"), [(1, 5), (20, 100)])
def test_perplexity_is_exp_of_torch_cross_entropy(formulas, n, vocab):
    rng = rng_for("ppl_torch", n, vocab)
    logits, targets = t64(rng.normal(size=(n, vocab)) * 3), torch.tensor(rng.integers(0, vocab, size=n))
    log_probs = torch.log_softmax(logits, dim=-1)[torch.arange(n), targets]
    close(formulas.perplexity(to_np(log_probs)), math.exp(F.cross_entropy(logits, targets).item()))


def _scores_by_loops(A, B):
    return np.array([[math.fsum(a * b) for b in B] for a in A])


@reference("mf_predict", "two_tower_scores")
@pytest.mark.parametrize(("n_a", "n_b", "k"), [(1, 1, 1), (4, 6, 3), (10, 7, 16)])
def test_score_matrices_hold_every_pairwise_dot_product(formulas, n_a, n_b, k):
    # r̂_ui = p_u · q_i (MF), s(u, i) = u · i (two towers): entry (u, i) of the score matrix.
    rng = rng_for("scores", n_a, n_b, k)
    A, B = rng.normal(size=(n_a, k)), rng.normal(size=(n_b, k))
    for fn in (formulas.mf_predict, formulas.two_tower_scores):
        got = fn(A, B)
        assert got.shape == (n_a, n_b)
        close(got, _scores_by_loops(A, B))


@reference("mf_predict", "two_tower_scores")
@torch_test
def test_score_matrices_match_torch_embedding_lookups(formulas):
    # Scoring (user, item) pairs through nn.Embedding lookups, as a recommender would.
    rng = rng_for("scores_torch")
    P, Q = rng.normal(size=(5, 4)), rng.normal(size=(8, 4))
    users = torch.nn.Embedding.from_pretrained(t64(P))
    items = torch.nn.Embedding.from_pretrained(t64(Q))
    u, i = torch.meshgrid(torch.arange(5), torch.arange(8), indexing="ij")
    expected = to_np((users(u) * items(i)).sum(-1))
    close(formulas.mf_predict(P, Q), expected)
    close(formulas.two_tower_scores(P, Q), expected)


# ======================================================================================================
# Recorded torch results (no torch needed)
# ======================================================================================================
# recorded.json holds float64 values written with repr, so they round-trip exactly; the same tolerances
# as the live comparison apply (only the summation order can differ on another machine).


@pytest.fixture(scope="module")
def recorded():
    return json.loads(RECORDED.read_text())["cases"]


def arr(value):
    return np.asarray(value, dtype=float)


@reference("rnn_cell")
def test_recorded_reference_rnn_cell(formulas, recorded):
    for case in recorded["rnn_cell"]:
        i = {k: arr(v) for k, v in case["inputs"].items()}
        close(formulas.rnn_cell(i["x"], i["h"], i["W_ih"], i["W_hh"], i["b_ih"], i["b_hh"]), case["expected"]["h"])


@reference("lstm_cell")
def test_recorded_reference_lstm_cell(formulas, recorded):
    for case in recorded["lstm_cell"]:
        i = {k: arr(v) for k, v in case["inputs"].items()}
        h, c = formulas.lstm_cell(i["x"], i["h"], i["c"], i["W_ih"], i["W_hh"], i["b_ih"], i["b_hh"])
        close(h, case["expected"]["h"])
        close(c, case["expected"]["c"])


@reference("multi_head_attention")
def test_recorded_reference_multi_head_attention(formulas, recorded):
    for case in recorded["multi_head_attention"]:
        i = case["inputs"]
        args = [arr(i[k]) for k in ("q", "k", "v", "W_q", "W_k", "W_v", "W_o")]
        close(formulas.multi_head_attention(*args, i["n_heads"]), case["expected"]["out"])


@reference("attention")
def test_recorded_reference_attention_with_mask_and_batch(formulas, recorded):
    cases = recorded["attention"]
    assert any(c["inputs"]["mask"] is not None for c in cases)
    for case in cases:
        i = case["inputs"]
        mask = None if i["mask"] is None else np.asarray(i["mask"], dtype=bool)
        close(formulas.attention(arr(i["Q"]), arr(i["K"]), arr(i["V"]), mask=mask), case["expected"]["out"])


@reference("adam_step")
def test_recorded_reference_adam_step_three_steps(formulas, recorded):
    for case in recorded["adam_step"]:
        i, e = case["inputs"], case["expected"]
        hyper = {k: i[k] for k in ("lr", "beta1", "beta2", "eps")}
        trace = _adam_step_ours(formulas, arr(i["theta"]), arr(i["grads"]), hyper)
        assert len(trace) == len(e["theta"]) == 3
        for step, (theta, m, v) in enumerate(trace):
            close(theta, e["theta"][step])
            close(m, e["m"][step])
            assert_allclose(v, e["v"][step], rtol=1e-9, atol=0)


@reference("momentum_step", "sgd_step")
def test_recorded_reference_sgd_and_momentum(formulas, recorded):
    (momentum,), (sgd,) = recorded["momentum_step"], recorded["sgd_step"]
    i = momentum["inputs"]
    theta, v = arr(i["theta"]), np.zeros(len(i["theta"]))
    for step, g in enumerate(arr(i["grads"])):
        theta, v = formulas.momentum_step(theta, v, g, i["lr"], beta=i["beta"])
        close(theta, momentum["expected"]["theta"][step])
        close(v, momentum["expected"]["v"][step])
    i = sgd["inputs"]
    theta = arr(i["theta"])
    for step, g in enumerate(arr(i["grads"])):
        theta = formulas.sgd_step(theta, g, i["lr"])
        close(theta, sgd["expected"]["theta"][step])


@reference("batch_norm")
def test_recorded_reference_batch_norm(formulas, recorded):
    for case in recorded["batch_norm"]:
        i = case["inputs"]
        got = formulas.batch_norm(arr(i["x"]), arr(i["gamma"]), arr(i["beta"]), eps=i["eps"])
        close(got, case["expected"]["out"])


@reference("softmax")
def test_recorded_reference_softmax_large_logits(formulas, recorded):
    for case in recorded["softmax"]:
        got = formulas.softmax(arr(case["inputs"]["z"]), axis=case["inputs"]["axis"])
        assert np.all(np.isfinite(got))
        assert_allclose(got, case["expected"]["out"], rtol=1e-9, atol=1e-300)


@reference("conv_output_size", "conv_params")
def test_recorded_reference_conv_sizes_and_parameter_counts(formulas, recorded):
    for case in recorded["conv_output_size"]:
        i = case["inputs"]
        assert formulas.conv_output_size(i["w"], i["k"], p=i["p"], s=i["s"]) == case["expected"]["out"], i
    for case in recorded["conv_params"]:
        i = case["inputs"]
        assert formulas.conv_params(i["k"], i["c_in"], i["c_out"]) == case["expected"]["with_bias"], i
