"""Reference tests of issue 12's math, classical-ML, metrics and NLP formulas.

Expected values come from scipy, scikit-learn, PyTorch (float64) and nltk, or from a hand calculation written
out in the test; never from the generated module itself. Randomised cases use a fixed seed per case.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from nltk.translate.bleu_score import sentence_bleu
from scipy import linalg, optimize, stats
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.naive_bayes import MultinomialNB

from tests.reference_helpers import close, reference, rng_for, t64, to_np, torch_test

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch-free tests still run
    torch = None  # type: ignore[assignment]
    F = None  # type: ignore[assignment]

SEEDS = range(4)


def random_distributions(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1] or None)


# ======================================================================================================
# Math essentials
# ======================================================================================================


@reference("kl_divergence")
@pytest.mark.parametrize("shape", [(2,), (5,), (40,), (3, 6)])
def test_kl_divergence_matches_scipy_entropy(formulas, shape):
    rng = rng_for("kl", shape)
    p, q = random_distributions(rng, shape), random_distributions(rng, shape)
    close(formulas.kl_divergence(p, q), stats.entropy(p, q, axis=-1))
    close(formulas.kl_divergence(q, p), stats.entropy(q, p, axis=-1))


@reference("kl_divergence")
def test_kl_divergence_zero_terms_infinity_and_asymmetry(formulas):
    # 0·ln 0 = 0: 0.6 ln(0.6/0.3) + 0.4 ln(0.4/0.3) + 0 = 0.6 ln 2 + 0.4 ln(4/3)
    expected = 0.6 * math.log(2) + 0.4 * math.log(4 / 3)
    assert float(formulas.kl_divergence([0.6, 0.4, 0.0], [0.3, 0.3, 0.4])) == pytest.approx(expected, rel=1e-12)
    # q = 0 where p > 0: +inf, without a RuntimeWarning (pytest turns warnings into errors)
    assert float(formulas.kl_divergence([0.5, 0.5], [1.0, 0.0])) == math.inf
    assert stats.entropy([0.5, 0.5], [1.0, 0.0]) == math.inf
    # p = q = 0 in the same place: the term is 0 (no nan, no 'invalid value' warning)
    close(formulas.kl_divergence([0.5, 0.5, 0.0], [0.25, 0.75, 0.0]), stats.entropy([0.5, 0.5, 0.0], [0.25, 0.75, 0.0]))
    p = [0.5, 0.3, 0.2]
    assert float(formulas.kl_divergence(p, p)) == 0.0
    forward = float(formulas.kl_divergence([0.5, 0.3, 0.2], [0.2, 0.5, 0.3]))
    backward = float(formulas.kl_divergence([0.2, 0.5, 0.3], [0.5, 0.3, 0.2]))
    assert forward > 0 and backward > 0 and abs(forward - backward) > 0.02


@reference("kl_divergence")
@torch_test
@pytest.mark.parametrize("seed", SEEDS)
def test_kl_divergence_matches_torch_kl_div(formulas, seed):
    rng = rng_for("kl_torch", seed)
    p, q = random_distributions(rng, (4, 7)), random_distributions(rng, (4, 7))
    # torch takes (input = log q, target = p): the reversed order is the classic pitfall
    per_row = F.kl_div(t64(np.log(q)), t64(p), reduction="none").sum(dim=-1)
    close(formulas.kl_divergence(p, q), to_np(per_row))


@reference("pca_explained_variance_ratio")
@pytest.mark.parametrize(("n", "d", "k"), [(5, 2, None), (20, 4, 2), (50, 6, 1), (6, 10, None), (30, 3, 3)])
def test_pca_explained_variance_ratio_matches_sklearn(formulas, n, d, k):
    # Correlated, uneven columns so the ratios differ clearly.
    rng = rng_for("pca", n, d)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 5
    expected = PCA(n_components=k, svd_solver="full").fit(X).explained_variance_ratio_
    got = formulas.pca_explained_variance_ratio(X, k=k)
    assert got.shape == expected.shape
    close(got, expected)
    if k is None:
        assert float(np.sum(got)) == pytest.approx(1.0, rel=1e-12)


@reference("pca_explained_variance_ratio")
def test_pca_explained_variance_ratio_from_covariance_eigenvalues(formulas):
    # Points on the line y = 2x plus a small orthogonal wobble: the eigenvalues of the covariance matrix
    # (scipy eigh, not an SVD) divided by their sum.
    t = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    wobble = np.array([0.1, -0.2, 0.0, 0.2, -0.1])
    X = np.column_stack([t - 2 * wobble, 2 * t + wobble])
    eigenvalues = linalg.eigh(np.cov(X, rowvar=False), eigvals_only=True)[::-1]
    close(formulas.pca_explained_variance_ratio(X), eigenvalues / eigenvalues.sum())
    close(formulas.pca_explained_variance_ratio(X, k=1), eigenvalues[:1] / eigenvalues.sum())


# ======================================================================================================
# Classical ML
# ======================================================================================================


@reference("ols_fit")
@pytest.mark.parametrize(("n", "d"), [(4, 2), (30, 5), (200, 12)])
def test_ols_fit_matches_sklearn_and_normal_equations(formulas, n, d):
    rng = rng_for("ols", n, d)
    X = rng.normal(size=(n, d)) + 0.5 * rng.normal(size=(n, 1))  # correlated columns
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    w = formulas.ols_fit(X, y)
    close(w, LinearRegression(fit_intercept=False).fit(X, y).coef_)
    # Normal equations solved by scipy's Cholesky: XᵀX w = Xᵀy
    assert_close_loose(w, linalg.cho_solve(linalg.cho_factor(X.T @ X), X.T @ y))
    # The residual is orthogonal to every column of X
    assert np.max(np.abs(X.T @ (y - X @ w))) < 1e-9 * (1 + np.abs(X).max() * np.abs(y).max() * n)


def assert_close_loose(got, expected):
    # The normal equations lose digits to the condition number of XᵀX; 1e-8 still catches any formula error.
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


@reference("ols_fit")
def test_ols_fit_exact_and_rank_deficient(formulas):
    X = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    # y = 2x₁ − x₂ exactly: 2−2=0, 6−1=5, 0−1=−1, 4−2=2
    close(formulas.ols_fit(X, [0.0, 5.0, -1.0, 2.0]), [2.0, -1.0])
    # Duplicate column: infinitely many solutions; lstsq returns the minimum-norm one, = pinv(X) y.
    X_dup = np.column_stack([X[:, 0], X[:, 0]])
    y = np.array([1.0, 2.0, 0.5, 1.5])
    close(formulas.ols_fit(X_dup, y), linalg.pinv(X_dup) @ y)


@reference("ridge_fit")
@pytest.mark.parametrize(("n", "d", "lam"), [(4, 2, 2.0), (30, 5, 0.1), (50, 8, 10.0), (5, 9, 1.0)])
def test_ridge_fit_matches_sklearn_ridge(formulas, n, d, lam):
    rng = rng_for("ridge", n, d, lam)
    X = rng.normal(size=(n, d)) + rng.normal(size=(n, 1))  # non-orthogonal columns
    y = X @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    w = formulas.ridge_fit(X, y, lam)
    expected = Ridge(alpha=lam, fit_intercept=False, solver="svd").fit(X, y).coef_
    np.testing.assert_allclose(w, expected, rtol=1e-9, atol=1e-11)
    # Zero gradient of ‖y − Xw‖² + λ‖w‖²: Xᵀ(Xw − y) + λw = 0
    assert np.max(np.abs(X.T @ (X @ w - y) + lam * w)) < 1e-9 * (1 + np.abs(X.T @ y).max())
    # λ > 0 shrinks the weights below the (minimum-norm) least-squares solution
    assert np.linalg.norm(w) < np.linalg.norm(linalg.lstsq(X, y)[0])


@reference("ridge_fit")
def test_ridge_fit_by_hand_and_multi_target(formulas):
    # X = [[1, 0], [0, 1], [1, 1]], y = [1, 2, 4], λ = 1:
    # XᵀX + I = [[3, 1], [1, 3]], Xᵀy = [5, 6]; inverse = [[3, −1], [−1, 3]] / 8
    # w = [(15 − 6)/8, (−5 + 18)/8] = [1.125, 1.625]
    close(formulas.ridge_fit([[1, 0], [0, 1], [1, 1]], [1, 2, 4], 1.0), [1.125, 1.625])
    rng = rng_for("ridge_multi")
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    expected = Ridge(alpha=0.7, fit_intercept=False, solver="svd").fit(X, Y).coef_.T
    np.testing.assert_allclose(formulas.ridge_fit(X, Y, 0.7), expected, rtol=1e-9, atol=1e-11)


@reference("bias_variance_decomposition")
def test_bias_variance_decomposition_by_hand(formulas):
    preds = [[1.0, 2.0, 4.0], [2.0, 3.0, 3.0], [3.0, 1.0, 5.0]]
    # mean prediction per point: (1+2+3)/3 = 2, (2+3+1)/3 = 2, (4+3+5)/3 = 4; f = [1.5, 2.5, 3]
    # bias² = mean(0.5², 0.5², 1²) = 1.5/3 = 0.5
    # variance per point: (1+0+1)/3, (0+1+1)/3, (0+1+1)/3 → mean 2/3
    # expected error = 0.5 + 2/3 + σ² (0.25) = 17/12
    bias_sq, variance, error = formulas.bias_variance_decomposition(preds, [1.5, 2.5, 3.0], noise_var=0.25)
    assert bias_sq == pytest.approx(0.5, rel=1e-12)
    assert variance == pytest.approx(2 / 3, rel=1e-12)
    assert error == pytest.approx(17 / 12, rel=1e-12)


@reference("bias_variance_decomposition")
@pytest.mark.parametrize("seed", SEEDS)
def test_bias_variance_decomposition_of_polynomial_fits(formulas, seed):
    # Fit degree-3 polynomials to 200 noisy samples of f = sin; then check the three terms against
    # numpy's var/mean written independently, and the expected error against a Monte Carlo estimate
    # of E[(y − f̂)²] with fresh noise y = f + ε.
    rng = rng_for("bv", seed)
    sigma = 0.3
    x_train = np.linspace(0, 3, 15)
    x_test = np.linspace(0.1, 2.9, 7)
    f_test = np.sin(x_test)
    preds = np.array([
        np.polyval(np.polyfit(x_train, np.sin(x_train) + sigma * rng.normal(size=x_train.size), 3), x_test)
        for _ in range(200)
    ])
    bias_sq, variance, error = formulas.bias_variance_decomposition(preds, f_test, noise_var=sigma**2)
    close(bias_sq, float(np.mean((preds.mean(axis=0) - f_test) ** 2)))
    close(variance, float(np.mean(np.var(preds, axis=0))))
    assert error == pytest.approx(bias_sq + variance + sigma**2, rel=1e-12)
    y_obs = f_test + sigma * rng.normal(size=(500, *preds.shape))  # fresh noise for every model and point
    monte_carlo = float(np.mean((y_obs - preds) ** 2))
    assert error == pytest.approx(monte_carlo, rel=0.01)  # standard error ≈ 0.15 %


@reference("logistic_gradient")
@torch_test
@pytest.mark.parametrize(("n", "d"), [(3, 2), (20, 4), (100, 7)])
def test_logistic_gradient_matches_torch_autograd(formulas, n, d):
    rng = rng_for("logistic_gradient", n, d)
    X, w = rng.normal(size=(n, d)), rng.normal(size=d)
    y = (rng.random(n) < 0.5).astype(float)
    w_t = t64(w).requires_grad_()
    F.binary_cross_entropy_with_logits(t64(X) @ w_t, t64(y)).backward()  # mean log loss
    close(formulas.logistic_gradient(X, y, w), to_np(w_t.grad))


@reference("logistic_gradient")
@pytest.mark.parametrize("seed", SEEDS)
def test_logistic_gradient_is_derivative_of_sklearn_log_loss(formulas, seed):
    rng = rng_for("logistic_fd", seed)
    X, w = rng.normal(size=(12, 3)), rng.normal(size=3)
    y = np.array([0, 1] * 6)

    def loss(v):
        return skm.log_loss(y, 1 / (1 + np.exp(-(X @ v))), labels=[0, 1])

    h = 1e-6
    numeric = [(loss(w + h * e) - loss(w - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(formulas.logistic_gradient(X, y, w), numeric, rtol=1e-6, atol=1e-8)


@reference("hinge_loss")
@pytest.mark.parametrize("n", [4, 33, 500])
def test_hinge_loss_matches_sklearn(formulas, n):
    rng = rng_for("hinge", n)
    y = rng.choice([-1, 1], size=n)
    scores = 2 * rng.normal(size=n)
    close(formulas.hinge_loss(y, scores), skm.hinge_loss(y, scores))


@reference("hinge_loss")
def test_hinge_loss_by_hand(formulas):
    # margins y·s = 2, 0.5, 0.3, −0.8 → max(0, 1 − m) = 0, 0.5, 0.7, 1.8 → mean 3.0/4
    assert formulas.hinge_loss([1, -1, 1, -1], [2.0, -0.5, 0.3, 0.8]) == pytest.approx(0.75, rel=1e-12)
    assert formulas.hinge_loss([1, -1], [1.0, -1.0]) == 0.0  # exactly on the margin


@reference("rbf_kernel")
@pytest.mark.parametrize(("n", "m", "d", "gamma"), [(2, 3, 2, 0.5), (10, 7, 4, 0.1), (5, 5, 1, 3.0)])
def test_rbf_kernel_matches_sklearn_and_cdist(formulas, n, m, d, gamma):
    rng = rng_for("rbf", n, m, d, gamma)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    got = formulas.rbf_kernel(X, Y, gamma)
    np.testing.assert_allclose(got, skm.pairwise.rbf_kernel(X, Y, gamma=gamma), rtol=1e-9, atol=1e-12)
    close(got, np.exp(-gamma * cdist(X, Y, "sqeuclidean")))


@reference("rbf_kernel")
def test_rbf_kernel_by_hand(formulas):
    # ‖(0,0) − (1,0)‖² = 1, ‖(1,2) − (0,3)‖² = 1 + 1 = 2; γ = 0.5 → e^{−0.5}, e^{−1}
    K = formulas.rbf_kernel([[0.0, 0.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 3.0]], 0.5)
    close(K, [[math.exp(-0.5), math.exp(-0.5 * 9)], [math.exp(-0.5 * 4), math.exp(-1.0)]])


@reference("kmeans_objective")
@pytest.mark.parametrize(("n", "k"), [(30, 2), (100, 4), (60, 6)])
def test_kmeans_objective_equals_sklearn_inertia(formulas, n, k):
    rng = rng_for("kmeans_obj", n, k)
    X = rng.normal(size=(n, 3)) + rng.integers(0, 4, size=(n, 1)) * 3.0
    km = KMeans(n_clusters=k, n_init=1, random_state=0).fit(X)
    got = formulas.kmeans_objective(X, km.cluster_centers_, km.labels_)
    assert got == pytest.approx(km.inertia_, rel=1e-9)


@reference("kmeans_objective")
def test_kmeans_objective_by_hand(formulas):
    X = [[0, 0], [1, 0], [0, 1], [5, 5], [6, 5], [2.5, 2.5]]
    # to (0,0): 0, 1, 1; (2.5, 2.5) to (5,5): 2·2.5² = 12.5; (5,5): 0; (6,5): 1 → 15.5
    assert formulas.kmeans_objective(X, [[0, 0], [5, 5]], [0, 0, 0, 1, 1, 1]) == 15.5


@reference("kmeans_step")
@pytest.mark.parametrize(("n", "k"), [(40, 3), (120, 5)])
def test_kmeans_step_matches_one_sklearn_lloyd_iteration(formulas, n, k):
    rng = rng_for("kmeans_step", n, k)
    X = rng.normal(size=(n, 2)) + rng.integers(0, 3, size=(n, 1)) * 4.0
    centers = X[rng.choice(n, size=k, replace=False)] + 0.1  # every cluster gets at least its seed point
    labels, new_centers = formulas.kmeans_step(X, centers)
    km = KMeans(n_clusters=k, init=centers, n_init=1, max_iter=1, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(new_centers, km.cluster_centers_, rtol=1e-9, atol=1e-12)
    # hand loop: nearest centre by scipy's distances, then the mean of each cluster
    expected_labels = np.argmin(cdist(X, centers, "sqeuclidean"), axis=1)
    np.testing.assert_array_equal(labels, expected_labels)
    for j in range(k):
        close(new_centers[j], X[expected_labels == j].mean(axis=0))
    # a Lloyd step never increases the objective
    before = float(np.sum((X - centers[labels]) ** 2))
    assert formulas.kmeans_objective(X, new_centers, labels) <= before + 1e-12


@reference("kmeans_step")
def test_kmeans_step_empty_cluster_keeps_its_centre_and_ties(formulas):
    X = [[0, 0], [1, 0], [0, 1], [5, 5], [6, 5], [2.5, 2.5]]
    labels, centers = formulas.kmeans_step(X, [[0, 0], [5, 5], [20, 20]])
    # (2.5, 2.5) is 12.5 from both (0,0) and (5,5): the tie goes to cluster 0
    assert labels.tolist() == [0, 0, 0, 1, 1, 0]
    # cluster 0: ((0+1+0+2.5)/4, (0+0+1+2.5)/4) = (0.875, 0.875); cluster 1: (5.5, 5); cluster 2: empty
    close(centers, [[0.875, 0.875], [5.5, 5.0], [20.0, 20.0]])


@reference("laplace_smoothed_log_probs")
@pytest.mark.parametrize(("n_classes", "n_terms", "alpha"), [(2, 3, 1.0), (3, 10, 0.5), (4, 25, 0.01)])
def test_laplace_smoothed_log_probs_matches_multinomial_nb(formulas, n_classes, n_terms, alpha):
    rng = rng_for("laplace", n_classes, n_terms, alpha)
    docs = rng.poisson(1.0, size=(5 * n_classes, n_terms))
    classes = np.repeat(np.arange(n_classes), 5)
    nb = MultinomialNB(alpha=alpha).fit(docs, classes)
    counts = np.array([docs[classes == c].sum(axis=0) for c in range(n_classes)])
    close(formulas.laplace_smoothed_log_probs(counts, alpha=alpha), nb.feature_log_prob_)


@reference("laplace_smoothed_log_probs")
def test_laplace_smoothed_log_probs_by_hand(formulas):
    # class 0 counts [3, 0, 1], α = 1: (3+1, 0+1, 1+1) / (4 + 3) = 4/7, 1/7, 2/7
    got = formulas.laplace_smoothed_log_probs([[3, 0, 1]])
    close(got, np.log([[4 / 7, 1 / 7, 2 / 7]]))


@reference("xgboost_leaf_weight")
def test_xgboost_leaf_weight_by_hand(formulas):
    # G = 0.5 − 1.2 + 0.3 = −0.4; H = 0.25 + 0.21 + 0.24 = 0.7; w* = 0.4 / (0.7 + 1) = 4/17
    assert formulas.xgboost_leaf_weight([0.5, -1.2, 0.3], [0.25, 0.21, 0.24], 1.0) == pytest.approx(4 / 17)
    # squared error, λ = 0: gᵢ = ŷᵢ − yᵢ, hᵢ = 1 → w* = mean(y − ŷ), the mean residual
    y, y_hat = np.array([3.0, 1.0, 2.5, 4.0]), np.array([2.0, 2.0, 2.0, 2.0])
    assert formulas.xgboost_leaf_weight(y_hat - y, np.ones(4), 0.0) == pytest.approx(0.625)


@reference("xgboost_leaf_weight")
@pytest.mark.parametrize("seed", SEEDS)
def test_xgboost_leaf_weight_minimises_second_order_objective(formulas, seed):
    # Σᵢ [gᵢ w + ½ hᵢ w²] + ½ λ w² (Chen & Guestrin eq. 4 for one leaf), minimised by scipy.
    rng = rng_for("xgb", seed)
    g, h, lam = rng.normal(size=8), rng.uniform(0.05, 0.25, size=8), rng.uniform(0.0, 3.0)
    result = optimize.minimize_scalar(lambda w: np.sum(g * w + 0.5 * h * w**2) + 0.5 * lam * w**2)
    assert formulas.xgboost_leaf_weight(g, h, lam) == pytest.approx(result.x, rel=1e-6, abs=1e-9)


@reference("huber_loss")
@torch_test
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_loss_matches_torch(formulas, delta):
    rng = rng_for("huber", delta)
    y, y_hat = rng.normal(size=50), 2 * rng.normal(size=50)  # residuals on both sides of δ
    close(formulas.huber_loss(y, y_hat, delta=delta), F.huber_loss(t64(y_hat), t64(y), delta=delta).item())


@reference("huber_loss")
def test_huber_loss_by_hand(formulas):
    # residuals 0.5, 2, 1, 3 with δ = 1: ½·0.25 = 0.125; 1·(2 − 0.5) = 1.5; ½·1 = 0.5 (on the edge); 2.5
    assert formulas.huber_loss([0, 0, 0, 0], [0.5, -2.0, 1.0, 3.0]) == pytest.approx(4.625 / 4)
    # δ = 2: 0.125; ½·4 = 2 (on the edge); 0.5; 2·(3 − 1) = 4 → 6.625 / 4
    assert formulas.huber_loss([0, 0, 0, 0], [0.5, -2.0, 1.0, 3.0], delta=2.0) == pytest.approx(6.625 / 4)


# ======================================================================================================
# Metrics
# ======================================================================================================


@reference("ndcg_at_k")
@pytest.mark.parametrize(("n", "k"), [(6, 3), (10, None), (10, 1), (25, 10), (4, 8)])
def test_ndcg_at_k_matches_sklearn_linear_and_exponential_gain(formulas, n, k):
    rel = rng_for("ndcg", n, k).integers(0, 4, size=n).astype(float)
    rel[:2], rel[-1] = [1.0, 2.0], 3.0  # not the ideal order; grades where 2^r − 1 and r disagree
    ranked = -np.arange(n, dtype=float)[None]  # scores for sklearn: strictly decreasing, so no ties
    # sklearn's ndcg_score uses the relevance itself as gain (linear); feeding it 2^r − 1 gives the
    # exponential gain.
    linear = skm.ndcg_score(rel[None], ranked, k=k)
    exponential = skm.ndcg_score((2.0**rel - 1)[None], ranked, k=k)
    close(formulas.ndcg_at_k(rel, k=k, gain="linear"), linear)
    close(formulas.ndcg_at_k(rel, k=k), exponential)
    assert abs(linear - exponential) > 1e-6  # the two gains really differ on this list


@reference("ndcg_at_k")
def test_ndcg_at_k_by_hand(formulas):
    # relevances [3, 2, 3, 0, 1, 2], k = 3, gains 2^r − 1 = [7, 3, 7, 0, 1, 3]
    # DCG = 7/log₂2 + 3/log₂3 + 7/log₂4 = 7 + 1.892789 + 3.5; ideal order [7, 7, 3]: 7 + 7/log₂3 + 3/2
    dcg = 7 + 3 / math.log2(3) + 7 / 2
    idcg = 7 + 7 / math.log2(3) + 3 / 2
    close(formulas.ndcg_at_k([3, 2, 3, 0, 1, 2], k=3), dcg / idcg)
    assert formulas.ndcg_at_k([0, 0, 0]) == 0.0  # no relevant item: 0, not nan
    assert formulas.ndcg_at_k([3, 2, 1, 0], k=2) == pytest.approx(1.0)  # already ideal
    with pytest.raises(ValueError):
        formulas.ndcg_at_k([1, 0], gain="quadratic")


@reference("precision_at_k")
@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 3), (20, 20), (15, 7)])
def test_precision_at_k_equals_sklearn_precision_of_the_top_k(formulas, n, k):
    rel = rng_for("p_at_k", n, k).integers(0, 2, size=n)
    rel[0] = 1  # at least one hit so sklearn needs no zero_division rule
    # the top k are the predicted positives: precision = TP / k
    expected = skm.precision_score(rel[:k], np.ones(k, dtype=int), zero_division=0)
    close(formulas.precision_at_k(rel, k), expected)


@reference("precision_at_k")
def test_precision_at_k_by_hand(formulas):
    assert formulas.precision_at_k([1, 0, 1, 1, 0], 3) == pytest.approx(2 / 3)  # 1 + 0 + 1 of 3
    assert formulas.precision_at_k([1, 0, 1, 1, 0], 5) == pytest.approx(3 / 5)
    assert formulas.precision_at_k([1, 1], 4) == pytest.approx(2 / 4)  # short list still divides by k
    with pytest.raises(ValueError):
        formulas.precision_at_k([1], 0)


@reference("recall_at_k")
@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 3), (20, 20), (15, 7)])
def test_recall_at_k_equals_sklearn_recall_of_the_top_k(formulas, n, k):
    rel = rng_for("r_at_k", n, k).integers(0, 2, size=n)
    rel[-1] = 1
    predicted = (np.arange(n) < k).astype(int)  # top k predicted relevant, the rest not
    close(formulas.recall_at_k(rel, k, int(rel.sum())), skm.recall_score(rel, predicted))


@reference("recall_at_k")
def test_recall_at_k_by_hand(formulas):
    assert formulas.recall_at_k([1, 0, 1, 1, 0], 3, 5) == pytest.approx(2 / 5)
    assert formulas.recall_at_k([1, 0, 1, 1, 0], 5, 3) == pytest.approx(1.0)
    assert formulas.recall_at_k([0, 0, 0], 2, 0) == 0.0  # nothing relevant: 0


@reference("mean_reciprocal_rank")
def test_mean_reciprocal_rank_by_hand(formulas):
    # first hits at ranks 3, 1, none, 2 → (1/3 + 1 + 0 + 1/2) / 4 = 11/24
    got = formulas.mean_reciprocal_rank([[0, 0, 1], [1, 0], [0, 0, 0], [0, 1, 1]])
    assert got == pytest.approx(11 / 24, rel=1e-12)
    assert formulas.mean_reciprocal_rank([[0, 0, 0, 0]]) == 0.0
    assert formulas.mean_reciprocal_rank([[True, False]]) == 1.0


@reference("mean_reciprocal_rank")
@pytest.mark.parametrize("seed", SEEDS)
def test_mean_reciprocal_rank_equals_a_plain_python_loop_and_sklearn_for_one_hit(formulas, seed):
    rng = rng_for("mrr", seed)
    lists = [list(rng.random(int(rng.integers(1, 9))) < 0.3) for _ in range(12)]
    expected = 0.0
    for rel in lists:
        rank = next((i + 1 for i, r in enumerate(rel) if r), None)
        expected += 1 / rank if rank else 0.0
    assert formulas.mean_reciprocal_rank(lists) == pytest.approx(expected / len(lists), rel=1e-12)
    # One relevant item per query: MRR = sklearn's label ranking average precision.
    n = 6
    y_true = np.zeros((10, n), dtype=int)
    y_true[np.arange(10), rng.integers(0, n, size=10)] = 1
    scores = rng.random((10, n))
    order = np.argsort(-scores, axis=1)
    ranked = [y_true[i, order[i]].tolist() for i in range(10)]
    close(formulas.mean_reciprocal_rank(ranked), skm.label_ranking_average_precision_score(y_true, scores))


@reference("fbeta_score")
@pytest.mark.parametrize(("seed", "beta"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0)])
def test_fbeta_score_matches_sklearn_on_the_same_counts(formulas, seed, beta):
    rng = rng_for("fbeta", seed, beta)
    y_true, y_pred = rng.integers(0, 2, size=60), rng.integers(0, 2, size=60)
    p, r = skm.precision_score(y_true, y_pred), skm.recall_score(y_true, y_pred)
    close(formulas.fbeta_score(p, r, beta), skm.fbeta_score(y_true, y_pred, beta=beta))


@reference("fbeta_score")
def test_fbeta_score_by_hand(formulas):
    # P = 0.75, R = 0.5, β = 2: 5 · 0.375 / (4 · 0.75 + 0.5) = 1.875 / 3.5
    assert formulas.fbeta_score(0.75, 0.5, 2.0) == pytest.approx(1.875 / 3.5)
    assert formulas.fbeta_score(0.75, 0.5, 1.0) == pytest.approx(0.6)  # F1 = 2PR/(P + R)
    assert formulas.fbeta_score(0.0, 0.0, 2.0) == 0.0


@reference("r2_score")
@pytest.mark.parametrize(("shape", "seed"), [((10,), 0), ((200,), 1), ((30, 3), 2), ((5, 2), 3)])
def test_r2_score_matches_sklearn(formulas, shape, seed):
    rng = rng_for("r2", shape, seed)
    y = rng.normal(size=shape) * 3
    y_hat = y + rng.normal(size=shape) * rng.uniform(0.5, 4)  # sometimes worse than the mean
    close(formulas.r2_score(y, y_hat), skm.r2_score(y, y_hat))


@reference("r2_score")
def test_r2_score_by_hand_and_constant_target(formulas):
    # y = [1, 2, 4, 3], ȳ = 2.5, ŷ = 2: SS_res = 1 + 0 + 4 + 1 = 6, SS_tot = 2.25 + 0.25 + 2.25 + 0.25 = 5
    assert formulas.r2_score([1, 2, 4, 3], [2, 2, 2, 2]) == pytest.approx(1 - 6 / 5)
    assert formulas.r2_score([2, 2, 2], [2, 2, 2]) == skm.r2_score([2, 2, 2], [2, 2, 2]) == 1.0
    assert formulas.r2_score([2, 2, 2], [2, 1, 2]) == skm.r2_score([2, 2, 2], [2, 1, 2]) == 0.0


def ece_reference(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    # Guo et al.: bin m holds lower < c ≤ upper; confidence 0 goes to the first bin.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for m, (lower, upper) in enumerate(itertools.pairwise(edges)):
        in_bin = (conf > lower) & (conf <= upper) | ((conf == 0.0) & (m == 0))
        if in_bin.sum():
            total += in_bin.sum() / conf.size * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


@reference("expected_calibration_error")
@pytest.mark.parametrize(("n", "n_bins"), [(50, 10), (300, 15), (20, 5)])
def test_expected_calibration_error_equals_reference_loop(formulas, n, n_bins):
    rng = rng_for("ece", n, n_bins)
    conf = rng.uniform(0.0, 1.0, size=n)
    conf[:3] = [0.0, 1.0, 0.5]  # the ends and an edge
    correct = (rng.random(n) < conf**2).astype(float)  # overconfident
    close(formulas.expected_calibration_error(conf, correct, n_bins=n_bins), ece_reference(conf, correct, n_bins))


@reference("expected_calibration_error")
def test_expected_calibration_error_by_hand(formulas):
    conf, correct = [0.95, 0.9, 0.72, 0.65, 0.3, 0.55], [1, 0, 1, 1, 0, 0]
    # 5 bins: (0.8, 1]: acc 1/2, conf 0.925 → 2·0.425; (0.6, 0.8]: acc 1, conf 0.685 → 2·0.315;
    # (0.2, 0.4]: 0.3; (0.4, 0.6]: 0.55; sum 2.33 over n = 6
    assert formulas.expected_calibration_error(conf, correct, n_bins=5) == pytest.approx(2.33 / 6)
    # 0.6 sits on an edge: it belongs to (0.4, 0.6], 0.7 to (0.6, 0.8] → (0.4 + 0.7) / 2
    assert formulas.expected_calibration_error([0.6, 0.7], [1, 0], n_bins=5) == pytest.approx(0.55)
    # perfectly calibrated bins
    assert formulas.expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0, abs=1e-15)


@reference("brier_score")
@pytest.mark.parametrize("n", [4, 50, 1000])
def test_brier_score_matches_sklearn(formulas, n):
    rng = rng_for("brier", n)
    y, p = rng.integers(0, 2, size=n), rng.random(n)
    close(formulas.brier_score(y, p), skm.brier_score_loss(y, p))


@reference("brier_score")
def test_brier_score_by_hand(formulas):
    # (0.1² + 0.1² + 0.2² + 0.3²) / 4 = 0.15 / 4
    assert formulas.brier_score([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]) == pytest.approx(0.0375)


# ======================================================================================================
# NLP
# ======================================================================================================


@reference("tf_idf")
@pytest.mark.parametrize(("n_docs", "n_terms"), [(3, 3), (10, 20), (40, 7)])
def test_tf_idf_matches_sklearn_without_its_plus_one(formulas, n_docs, n_terms):
    counts = rng_for("tfidf", n_docs, n_terms).poisson(0.8, size=(n_docs, n_terms))
    counts[0] += 1  # every term occurs somewhere (sklearn's idf is infinite otherwise)
    sk = TfidfTransformer(smooth_idf=False, norm=None).fit_transform(counts).toarray()
    # sklearn: tf · (ln(N/df) + 1) = tf · ln(N/df) + tf
    close(formulas.tf_idf(counts), sk - counts)


@reference("tf_idf")
def test_tf_idf_by_hand(formulas):
    counts = [[2, 1, 0, 0], [0, 1, 3, 0], [1, 1, 1, 0]]
    # N = 3; df = 2, 3, 2, 0 → idf = ln 1.5, ln 1 = 0, ln 1.5, (unused: the term never occurs → 0)
    a = math.log(1.5)
    expected = [[2 * a, 0, 0, 0], [0, 0, 3 * a, 0], [a, 0, a, 0]]
    close(formulas.tf_idf(counts), expected)


def bm25_reference(tf, df, doc_len, avg_doc_len, n_docs, k1, b):
    # IIR eq. 11.32, term by term in plain Python
    score = 0.0
    for tf_t, df_t in zip(tf, df, strict=True):
        norm = k1 * ((1 - b) + b * doc_len / avg_doc_len)
        score += math.log(n_docs / df_t) * (k1 + 1) * tf_t / (norm + tf_t)
    return score


@reference("bm25")
def test_bm25_by_hand(formulas):
    # k1 = 1.5, b = 0.75, L_d/L_ave = 1.2: norm = 1.5 · (0.25 + 0.9) = 1.725
    # term 1: ln(1000/10) · 2.5·3/(1.725 + 3) = 4.605170 · 1.587302 = 7.309794
    # term 2: ln(1000/100) · 2.5·1/(1.725 + 1) = 2.302585 · 0.917431 = 2.112463
    expected = math.log(100) * 7.5 / 4.725 + math.log(10) * 2.5 / 2.725
    assert expected == pytest.approx(9.422257, abs=1e-6)
    assert formulas.bm25([3, 1], [10, 100], 120, 100, 1000) == pytest.approx(expected, rel=1e-12)


@reference("bm25")
@pytest.mark.parametrize("seed", SEEDS)
def test_bm25_equals_reference_and_its_limits(formulas, seed):
    rng = rng_for("bm25", seed)
    n_terms, n_docs = int(rng.integers(1, 6)), 5000
    tf, df = rng.integers(0, 10, size=n_terms), rng.integers(1, n_docs, size=n_terms)
    doc_len, avg, k1, b = rng.uniform(20, 400), rng.uniform(50, 200), rng.uniform(0.5, 2.0), rng.uniform(0, 1)
    got = formulas.bm25(tf, df, doc_len, avg, n_docs, k1=k1, b=b)
    assert got == pytest.approx(bm25_reference(tf, df, doc_len, avg, n_docs, k1, b), rel=1e-12)
    # b = 0: the document length does not matter
    assert formulas.bm25(tf, df, 10.0, avg, n_docs, k1=k1, b=0.0) == pytest.approx(
        formulas.bm25(tf, df, 1000.0, avg, n_docs, k1=k1, b=0.0), rel=1e-12)
    # tf → ∞ saturates at (k1 + 1)·idf
    big = formulas.bm25([1e12], [df[0]], doc_len, avg, n_docs, k1=k1, b=b)
    assert big == pytest.approx((k1 + 1) * math.log(n_docs / df[0]), rel=1e-9)


def nltk_bleu(candidate, references, max_n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns (and returns ~1e-308) when a precision is 0
        return sentence_bleu(references, candidate, weights=(1 / max_n,) * max_n)


@reference("bleu")
@pytest.mark.parametrize(("seed", "max_n"), [(0, 1), (1, 2), (2, 2), (3, 3), (4, 4), (5, 4)])
def test_bleu_matches_nltk_sentence_bleu(formulas, seed, max_n):
    rng = rng_for("bleu", seed, max_n)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "dog"]
    reference_sentence = list(rng.choice(vocab, size=int(rng.integers(6, 12))))
    candidate = list(reference_sentence)
    for i in rng.choice(len(candidate), size=2, replace=False):
        candidate[i] = str(rng.choice(vocab))  # a few substitutions
    candidate = candidate[: len(candidate) - int(rng.integers(0, 3))]  # sometimes short: brevity penalty
    references = [reference_sentence, list(rng.choice(vocab, size=int(rng.integers(5, 10))))]
    np.testing.assert_allclose(formulas.bleu(candidate, references, max_n=max_n),
                               nltk_bleu(candidate, references, max_n), rtol=1e-9, atol=1e-300)


@reference("bleu")
def test_bleu_by_hand_clipping_brevity_and_zero(formulas):
    # 'the' × 7 against one reference with 'the' twice: clipped unigram precision 2/7; c = 7 > r = 6: BP = 1
    assert formulas.bleu(["the"] * 7, [["the", "cat", "is", "on", "the", "mat"]], max_n=1) == pytest.approx(2 / 7)
    # c = 5, closest reference length 6 (refs of 7 and 6): BP = e^{1 − 6/5};
    # p1 = 5/5, p2 = 3/4 ('the cat', 'on the', 'the mat'; not 'cat on') → BLEU = BP · √(3/4)
    refs = [["the", "cat", "sat", "on", "the", "mat", "today"], ["a", "cat", "was", "on", "the", "mat"]]
    expected = math.exp(1 - 6 / 5) * math.sqrt(3 / 4)
    assert formulas.bleu(["the", "cat", "on", "the", "mat"], refs, max_n=2) == pytest.approx(expected)
    # no 4-gram of the candidate is in a reference: exactly 0 (no smoothing)
    assert formulas.bleu(["the", "cat", "on", "the", "mat"], refs) == 0.0
    # a perfect match
    assert formulas.bleu(refs[0], refs) == pytest.approx(1.0)


@reference("skipgram_negative_loss")
@torch_test
@pytest.mark.parametrize(("d", "k"), [(3, 2), (16, 5), (50, 15)])
def test_skipgram_negative_loss_matches_torch(formulas, d, k):
    rng = rng_for("sgns", d, k)
    v_in, v_pos, v_negs = rng.normal(size=d), rng.normal(size=d), rng.normal(size=(k, d))
    expected = -F.logsigmoid(t64(v_pos) @ t64(v_in)) - F.logsigmoid(-(t64(v_negs) @ t64(v_in))).sum()
    close(formulas.skipgram_negative_loss(v_in, v_pos, v_negs), expected.item())


@reference("skipgram_negative_loss")
@torch_test
def test_skipgram_negative_loss_batch_is_the_mean_and_large_scores_are_stable(formulas):
    rng = rng_for("sgns_batch")
    v_in, v_pos, v_negs = rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), rng.normal(size=(4, 3, 8))
    pos = (t64(v_pos) * t64(v_in)).sum(-1)
    neg = torch.einsum("bkd,bd->bk", t64(v_negs), t64(v_in))
    expected = (-F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)).mean()
    close(formulas.skipgram_negative_loss(v_in, v_pos, v_negs), expected.item())
    # scores of ±1000: the loss is ln(1 + e^{−1000}) + ln(1 + e^{1000}) ≈ 1000, finite and warning-free
    got = formulas.skipgram_negative_loss([10.0, 0.0], [100.0, 0.0], [[100.0, 0.0]])
    assert got == pytest.approx(1000.0, rel=1e-12)


@reference("skipgram_negative_loss")
def test_skipgram_negative_loss_by_hand(formulas):
    # v_in = 0: every σ(0) = ½, so the loss is (1 + K) ln 2
    assert formulas.skipgram_negative_loss([0.0, 0.0], [1.0, 2.0], [[3.0, 4.0], [1.0, 1.0]]) == pytest.approx(
        3 * math.log(2))
