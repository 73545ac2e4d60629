"""Reference tests for the deep-learning formulas of issue 12: neural nets, optimizers, CNNs, RNNs,
Transformers, recommenders and system design.

Expected values come from PyTorch 2 (float64, CPU), SciPy, or a hand calculation written out in the test;
never from the generated module. Cases are randomised over a few seeds and shapes with `rng_for`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from tests.reference_helpers import close, reference, rng_for, t64, to_np, torch_test

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch-free tests still run
    torch = None  # type: ignore[assignment]
    F = None  # type: ignore[assignment]

SHAPES = [(5,), (3, 7), (2, 4, 6)]


# ======================================================================================================
# Neural nets
# ======================================================================================================


@reference("layer_norm")
@torch_test
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 0.7])
def test_layer_norm_matches_torch(formulas, shape, eps):
    rng = rng_for("layer_norm", shape, eps)
    x = rng.normal(2.0, 1.5, size=shape)
    gamma, beta = rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    want = F.layer_norm(t64(x), (shape[-1],), t64(gamma), t64(beta), eps=eps)
    close(formulas.layer_norm(x, gamma, beta, eps=eps), to_np(want))


@reference("layer_norm")
def test_layer_norm_by_hand(formulas):
    # x = [1, 2, 6]: μ = 3, σ² = (4 + 1 + 9)/3 = 14/3; with ε = 1: divide x − μ = [−2, −1, 3] by √(17/3).
    root = math.sqrt(14 / 3 + 1)
    want = [1 * -2 / root + 0, 2 * -1 / root + 1, 0.5 * 3 / root - 1]
    close(formulas.layer_norm([1.0, 2.0, 6.0], [1.0, 2.0, 0.5], [0.0, 1.0, -1.0], eps=1.0), want)


@reference("rms_norm")
@torch_test
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_rms_norm_matches_torch(formulas, shape, eps):
    rng = rng_for("rms_norm", shape, eps)
    x, g = rng.normal(size=shape), rng.normal(size=shape[-1])
    close(formulas.rms_norm(x, g, eps=eps), to_np(F.rms_norm(t64(x), (shape[-1],), t64(g), eps=eps)))


@reference("rms_norm")
def test_rms_norm_default_eps_is_1e_6(formulas):
    # x = [3, 4]: mean(x²) = 12.5; with ε = 1e-6 the root is √12.500001.
    root = math.sqrt(12.5 + 1e-6)
    close(formulas.rms_norm([3.0, 4.0], [1.0, 2.0]), [3 / root, 8 / root])


@reference("gelu")
@torch_test
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(formulas, approximate):
    x = np.concatenate([np.linspace(-8, 8, 1601), rng_for("gelu", approximate).normal(0, 3, size=200)])
    want = to_np(F.gelu(t64(x), approximate=approximate))
    assert_close = np.testing.assert_allclose
    assert_close(formulas.gelu(x, approximate=approximate), want, rtol=1e-12, atol=1e-15)


@reference("gelu")
def test_gelu_exact_equals_x_times_normal_cdf_from_scipy(formulas):
    # scipy's ndtr is Φ, accurate in the tails: relative agreement even where GELU is ~1e-20.
    x = np.concatenate([np.linspace(-12, 12, 2401), [0.0, 1e-300, -1e-300, 2.5 * math.sqrt(2)]])
    np.testing.assert_allclose(formulas.gelu(x), x * special.ndtr(x), rtol=5e-12, atol=0)
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    close(formulas.gelu(x, approximate="tanh"), tanh_form)
    with pytest.raises(ValueError, match="approximate"):
        formulas.gelu(x, approximate="fast")


@reference("tanh_grad")
@torch_test
def test_tanh_grad_matches_autograd(formulas):
    z = rng_for("tanh_grad").normal(0, 2, size=50)
    zt = t64(z).requires_grad_()
    torch.tanh(zt).sum().backward()
    close(formulas.tanh_grad(z), to_np(zt.grad))


@reference("tanh_grad")
def test_tanh_grad_by_hand_and_finite_difference(formulas):
    # tanh(ln 3) = (3 − 1/3)/(3 + 1/3) = 0.8, so 1 − 0.64 = 0.36.
    close(formulas.tanh_grad(math.log(3)), 0.36)
    z = np.linspace(-3, 3, 13)
    h = 1e-6
    np.testing.assert_allclose(formulas.tanh_grad(z), (np.tanh(z + h) - np.tanh(z - h)) / (2 * h), atol=1e-9)


@reference("silu")
@torch_test
def test_silu_matches_torch(formulas):
    z = np.concatenate([np.linspace(-40, 40, 801), rng_for("silu").normal(0, 3, size=100)])
    close(formulas.silu(z), to_np(F.silu(t64(z))))


@reference("silu")
def test_silu_equals_z_times_expit(formulas):
    z = rng_for("silu_scipy").normal(0, 4, size=100)
    close(formulas.silu(z), z * special.expit(z))
    close(formulas.silu(math.log(3)), 0.75 * math.log(3))  # σ(ln 3) = 3/4


@reference("swiglu")
@torch_test
@pytest.mark.parametrize(("n", "d", "d_ff"), [(1, 2, 3), (5, 4, 7), (3, 8, 11)])
def test_swiglu_matches_torch_linear_layers(formulas, n, d, d_ff):
    # LLaMA's FeedForward: w2(silu(w1(x)) * w3(x)) with nn.Linear(bias=False) weights (out, in).
    rng = rng_for("swiglu", n, d, d_ff)
    x = rng.normal(size=(n, d))
    w1, w3, w2 = rng.normal(size=(d_ff, d)), rng.normal(size=(d_ff, d)), rng.normal(size=(d, d_ff))
    want = F.linear(F.silu(F.linear(t64(x), t64(w1))) * F.linear(t64(x), t64(w3)), t64(w2))
    close(formulas.swiglu(x, w1.T, w3.T, w2.T), to_np(want))


@reference("label_smoothing_cross_entropy")
@torch_test
@pytest.mark.parametrize(("n", "k"), [(1, 2), (6, 3), (10, 17)])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.35, 1.0])
def test_label_smoothing_cross_entropy_matches_torch(formulas, n, k, alpha):
    rng = rng_for("lsce", n, k, alpha)
    logits, y = rng.normal(0, 3, size=(n, k)), rng.integers(0, k, size=n)
    want = F.cross_entropy(t64(logits), torch.tensor(y), label_smoothing=alpha).item()
    close(formulas.label_smoothing_cross_entropy(logits, y, alpha), want)


@reference("label_smoothing_cross_entropy")
def test_label_smoothing_cross_entropy_by_hand(formulas):
    # One row, logits [0, ln 3] → p = [1/4, 3/4]; target 1, α = 0.2, K = 2: q = [0.1, 0.9].
    want = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    close(formulas.label_smoothing_cross_entropy([[0.0, math.log(3)]], [1], 0.2), want)


def _focal_by_hand(p: float, y: int, gamma: float, alpha: float) -> float:
    p_t = p if y == 1 else 1 - p
    alpha_t = alpha if y == 1 else 1 - alpha
    return -alpha_t * (1 - p_t) ** gamma * math.log(p_t)


@reference("focal_loss")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.0, 0.5), (0.5, 0.9), (3.0, 0.1)])
def test_focal_loss_by_hand(formulas, seed, gamma, alpha):
    rng = rng_for("focal", seed, gamma, alpha)
    p, y = rng.uniform(0.01, 0.99, size=9), rng.integers(0, 2, size=9)
    want = math.fsum(_focal_by_hand(pi, int(yi), gamma, alpha) for pi, yi in zip(p, y, strict=True)) / 9
    close(formulas.focal_loss(p, y, gamma=gamma, alpha=alpha), want)


@reference("focal_loss")
@torch_test
def test_focal_loss_matches_torch_ops_and_bce(formulas):
    # The torchvision formula, written with torch ops on logits (p = σ(logit)).
    logits = t64(rng_for("focal_torch").normal(0, 2, size=40))
    y = t64(rng_for("focal_torch_y").integers(0, 2, size=40))
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    want = ((0.25 * y + 0.75 * (1 - y)) * ce * (1 - p_t) ** 2).mean().item()
    close(formulas.focal_loss(to_np(p), to_np(y)), want)
    # γ = 0, α = 0.5: half the binary cross-entropy.
    close(formulas.focal_loss(to_np(p), to_np(y), gamma=0.0, alpha=0.5), 0.5 * ce.mean().item())


@reference("distillation_loss")
@torch_test
@pytest.mark.parametrize(("n", "k"), [(1, 2), (4, 5), (7, 10)])
@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.5), (2.0, 0.7), (4.5, 0.9), (3.0, 0.0)])
def test_distillation_loss_matches_torch(formulas, n, k, T, alpha):
    rng = rng_for("distill", n, k, T, alpha)
    s, t, y = rng.normal(0, 2, size=(n, k)), rng.normal(0, 2, size=(n, k)), rng.integers(0, k, size=n)
    kl = F.kl_div(F.log_softmax(t64(s) / T, dim=-1), F.softmax(t64(t) / T, dim=-1), reduction="batchmean")
    want = (1 - alpha) * F.cross_entropy(t64(s), torch.tensor(y)) + alpha * T**2 * kl
    close(formulas.distillation_loss(s, t, y, T, alpha), want.item())


@reference("distillation_loss")
def test_distillation_loss_by_hand(formulas):
    # Two classes, T = 2: teacher logits [0, 2 ln 3] → p = softmax([0, ln 3]) = [1/4, 3/4];
    # student logits [0, 0] → q = [1/2, 1/2]; KL = ¼ ln(½) + ¾ ln(3/2); CE(student, y=0) = ln 2.
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    want = 0.4 * math.log(2) + 0.6 * 4 * kl
    close(formulas.distillation_loss([[0.0, 0.0]], [[0.0, 2 * math.log(3)]], [0], 2.0, 0.6), want)


@reference("clip_grad_norm")
@torch_test
@pytest.mark.parametrize("max_norm", [1e-7, 0.5, 3.0, 100.0])
@pytest.mark.parametrize("seed", range(3))
def test_clip_grad_norm_matches_torch(formulas, max_norm, seed):
    rng = rng_for("clip", max_norm, seed)
    shapes = [(3,), (2, 4), (5, 1, 2)]
    scale = 1e-7 if max_norm == 1e-7 else 1.0  # tiny gradients: the 1e-6 in the denominator matters
    grads = [rng.normal(size=s) * scale for s in shapes]
    params = [torch.nn.Parameter(t64(np.zeros(s))) for s in shapes]
    for p, g in zip(params, grads, strict=True):
        p.grad = t64(g)
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    got = formulas.clip_grad_norm(grads, max_norm)
    assert len(got) == len(grads)
    for g, p in zip(got, params, strict=True):
        close(g, to_np(p.grad))


@reference("clip_grad_norm")
def test_clip_grad_norm_by_hand(formulas):
    # ‖[3, 4, 12]‖ = 13; c = 6.5 → factor 6.5/(13 + 1e-6).
    factor = 6.5 / (13 + 1e-6)
    got = formulas.clip_grad_norm([[3.0, 4.0], [[12.0]]], 6.5)
    close(got[0], [3 * factor, 4 * factor])
    close(got[1], [[12 * factor]])
    unchanged = formulas.clip_grad_norm([[3.0, 4.0], [[12.0]]], 13.0)  # 13/(13 + 1e-6) < 1: still scaled
    close(unchanged[1], [[12 * 13 / (13 + 1e-6)]])
    same = formulas.clip_grad_norm([[3.0, 4.0]], 50.0)
    close(same[0], [3.0, 4.0])
