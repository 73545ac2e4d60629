"""Reference tests for the deep-learning formulas of issue 12: neural nets, optimizers, CNNs, RNNs,
Transformers, recommenders and system design.

Expected values come from PyTorch 2 (float64, CPU), SciPy, or a hand calculation written out in the test;
never from the generated module. Cases are randomised over a few seeds and shapes with `rng_for`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

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
    assert formulas.gelu([1e200, -1e200]).tolist() == [1e200, -0.0]  # no overflow warning far in the tails
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
def test_focal_loss_at_certain_predictions(formulas):
    # p_t = 1: (1 − 1)^γ·log 1 = 0; p_t = 0: −log 0 = inf, without a RuntimeWarning.
    assert formulas.focal_loss([1.0, 0.0], [1, 0]) == 0.0
    assert formulas.focal_loss([1.0, 0.0], [0, 0]) == math.inf


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


# ======================================================================================================
# Optimization
# ======================================================================================================

OPTIMIZER_SHAPES = [(3,), (2, 5)]


def _torch_steps(optimizer_class, theta, grads, **kwargs):
    """Run torch's optimizer over the gradient sequence; return θ and the optimizer state after each step."""
    param = torch.nn.Parameter(t64(theta))
    optimizer = optimizer_class([param], **kwargs)
    history = []
    for g in grads:
        param.grad = t64(g)
        optimizer.step()
        state = optimizer.state[param]
        history.append((to_np(param).copy(), {k: to_np(v).copy() for k, v in state.items() if k != "step"}))
    return history


@reference("adamw_step")
@torch_test
@pytest.mark.parametrize("shape", OPTIMIZER_SHAPES)
@pytest.mark.parametrize(("lr", "betas", "eps", "wd"), [
    (1e-3, (0.9, 0.999), 1e-8, 0.01),  # torch defaults
    (0.1, (0.5, 0.75), 0.1, 0.5),  # ε comparable to √v̂, strong decay
    (0.05, (0.8, 0.9), 1e-3, 0.0),  # no decay: plain Adam
])
def test_adamw_step_matches_torch_over_several_steps(formulas, shape, lr, betas, eps, wd):
    rng = rng_for("adamw", shape, lr, eps, wd)
    theta0 = rng.normal(size=shape)
    grads = rng.normal(size=(6, *shape))
    history = _torch_steps(torch.optim.AdamW, theta0, grads, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    theta, m, v = theta0, np.zeros(shape), np.zeros(shape)
    for t, (g, (want_theta, state)) in enumerate(zip(grads, history, strict=True), start=1):
        theta, m, v = formulas.adamw_step(theta, g, m, v, t, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps,
                                          weight_decay=wd)
        close(theta, want_theta)
        close(m, state["exp_avg"])
        close(v, state["exp_avg_sq"])


@reference("adamw_step")
def test_adamw_step_by_hand_first_step(formulas):
    # t = 1: m̂ = g, v̂ = g², so θ₁ = θ₀(1 − ηλ) − η·g/(|g| + ε). θ₀ = 2, g = −3, η = 0.1, λ = 0.5, ε = 1.
    theta, m, v = formulas.adamw_step([2.0], [-3.0], [0.0], [0.0], 1, lr=0.1, eps=1.0, weight_decay=0.5)
    close(theta, [2.0 * 0.95 + 0.1 * 3 / 4])
    close(m, [0.1 * -3.0])
    close(v, [0.001 * 9.0])


@reference("rmsprop_step")
@torch_test
@pytest.mark.parametrize("shape", OPTIMIZER_SHAPES)
@pytest.mark.parametrize(("lr", "rho", "eps"), [(1e-2, 0.99, 1e-8), (0.1, 0.75, 0.5), (0.03, 0.9, 1e-3)])
def test_rmsprop_step_matches_torch_over_several_steps(formulas, shape, lr, rho, eps):
    rng = rng_for("rmsprop", shape, lr, rho)
    theta0, grads = rng.normal(size=shape), rng.normal(size=(6, *shape))
    history = _torch_steps(torch.optim.RMSprop, theta0, grads, lr=lr, alpha=rho, eps=eps)
    theta, r = theta0, np.zeros(shape)
    for g, (want_theta, state) in zip(grads, history, strict=True):
        theta, r = formulas.rmsprop_step(theta, g, r, lr=lr, rho=rho, eps=eps)
        close(theta, want_theta)
        close(r, state["square_avg"])


@reference("rmsprop_step")
def test_rmsprop_step_by_hand(formulas):
    # r = 0.75·0 + 0.25·2² = 1; θ = 1 − 0.1·2/(1 + 0.5). With ε inside the root it would be 1 − 0.2/√1.5.
    theta, r = formulas.rmsprop_step([1.0], [2.0], [0.0], lr=0.1, rho=0.75, eps=0.5)
    close(r, [1.0])
    close(theta, [1 - 0.2 / 1.5])


@reference("adagrad_step")
@torch_test
@pytest.mark.parametrize("shape", OPTIMIZER_SHAPES)
@pytest.mark.parametrize(("lr", "eps"), [(1e-2, 1e-10), (0.5, 1.0), (0.1, 1e-3)])
def test_adagrad_step_matches_torch_over_several_steps(formulas, shape, lr, eps):
    rng = rng_for("adagrad", shape, lr, eps)
    theta0, grads = rng.normal(size=shape), rng.normal(size=(6, *shape))
    history = _torch_steps(torch.optim.Adagrad, theta0, grads, lr=lr, eps=eps)
    theta, r = theta0, np.zeros(shape)
    for g, (want_theta, state) in zip(grads, history, strict=True):
        theta, r = formulas.adagrad_step(theta, g, r, lr=lr, eps=eps)
        close(theta, want_theta)
        close(r, state["sum"])


@reference("adagrad_step")
def test_adagrad_step_by_hand(formulas):
    # Two steps g = 3 then 4: r = 9 then 25; θ = 1 − 0.5·3/(3 + 1) = 0.625, then 0.625 − 0.5·4/(5 + 1).
    theta, r = formulas.adagrad_step([1.0], [3.0], [0.0], lr=0.5, eps=1.0)
    theta, r = formulas.adagrad_step(theta, [4.0], r, lr=0.5, eps=1.0)
    close(r, [25.0])
    close(theta, [0.625 - 2 / 6])


@reference("warmup_cosine_lr")
@torch_test
@pytest.mark.parametrize(("max_lr", "warmup", "total", "min_lr"), [
    (2.0, 4, 12, 0.5), (3e-4, 100, 1100, 0.0), (1e-3, 0, 50, 1e-5), (0.1, 7, 8, 0.01),
])
def test_warmup_cosine_lr_matches_torch_schedulers(formulas, max_lr, warmup, total, min_lr):
    # Warmup from torch LinearLR (factor t/W), decay from torch CosineAnnealingLR(T_max = T − W, eta_min).
    param = torch.nn.Parameter(t64([0.0]))
    warm_opt = torch.optim.SGD([param], lr=max_lr)
    warm = torch.optim.lr_scheduler.LinearLR(warm_opt, start_factor=1e-300, end_factor=1.0, total_iters=max(warmup, 1))
    cos_opt = torch.optim.SGD([param], lr=max_lr)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(cos_opt, T_max=total - warmup, eta_min=min_lr)
    warm_lrs, cos_lrs = [], []
    for _ in range(total + 1):
        warm_lrs.append(warm_opt.param_groups[0]["lr"])
        cos_lrs.append(cos_opt.param_groups[0]["lr"])
        warm_opt.step()
        cos_opt.step()
        warm.step()
        cos.step()
    for t in range(total + 5):
        if t < warmup:
            want = max_lr * t / warmup if t else 0.0
            got = float(formulas.warmup_cosine_lr(t, max_lr, warmup, total, min_lr))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300)
            assert got == pytest.approx(warm_lrs[t], rel=1e-9, abs=1e-12)
        elif t <= total:
            want = cos_lrs[t - warmup]
            close(float(formulas.warmup_cosine_lr(t, max_lr, warmup, total, min_lr)), want)
        else:
            assert float(formulas.warmup_cosine_lr(t, max_lr, warmup, total, min_lr)) == min_lr


@reference("warmup_cosine_lr")
def test_warmup_cosine_lr_by_hand(formulas):
    # max 2, W = 4, T = 12, min 0.5: t = 1 → 2·1/4; t = 8 is halfway: 0.5 + 1.5·½(1 + cos(π/2)) = 1.25;
    # t = 6: 0.5 + 0.75·(1 + cos(π/4)).
    lr = [float(formulas.warmup_cosine_lr(t, 2.0, 4, 12, 0.5)) for t in (0, 1, 4, 6, 8, 12, 13)]
    close(lr, [0.0, 0.5, 2.0, 0.5 + 0.75 * (1 + math.sqrt(0.5)), 1.25, 0.5, 0.5])


# ======================================================================================================
# CNNs
# ======================================================================================================


@reference("conv_macs")
@torch_test
@pytest.mark.parametrize(("h", "w", "k", "c_in", "c_out"), [(9, 7, 3, 2, 5), (8, 8, 1, 4, 3), (11, 6, 5, 3, 2)])
def test_conv_macs_counts_the_products_of_torch_conv2d(formulas, h, w, k, c_in, c_out):
    # Count multiplications directly: conv2d of an all-ones input with all-ones weights gives, at every
    # output position, the number of products summed there (K²·C_in per output channel).
    conv = torch.nn.Conv2d(c_in, c_out, k, bias=False, dtype=torch.float64)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, c_in, h, w, dtype=torch.float64))
    _, _, h_out, w_out = out.shape
    assert formulas.conv_macs(h_out, w_out, k, c_in, c_out) == int(out.sum().item())


@reference("conv_macs")
def test_conv_macs_by_hand(formulas):
    # ResNet-50 stem: 7×7, 3 → 64, output 112×112: 49·3·64 = 9408 MACs per position, × 12544 positions.
    assert formulas.conv_macs(112, 112, 7, 3, 64) == 9408 * 12544 == 118_013_952
    assert formulas.conv_macs(56, 56, 3, 64, 64) == 9 * 64 * 64 * 56 * 56


@reference("depthwise_separable_params")
@torch_test
@pytest.mark.parametrize(("k", "c_in", "c_out"), [(3, 32, 64), (5, 3, 7), (1, 8, 8), (7, 16, 5)])
def test_depthwise_separable_params_matches_torch(formulas, k, c_in, c_out):
    block = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False),
                                torch.nn.Conv2d(c_in, c_out, 1, bias=False))
    assert formulas.depthwise_separable_params(k, c_in, c_out) == sum(p.numel() for p in block.parameters())


@reference("depthwise_separable_params")
def test_depthwise_separable_params_by_hand(formulas):
    # MobileNet's ratio to a standard conv (K²·C_in·C_out): 1/C_out + 1/K².
    k, c_in, c_out = 3, 32, 64
    assert formulas.depthwise_separable_params(k, c_in, c_out) == 9 * 32 + 32 * 64 == 2336
    ratio = formulas.depthwise_separable_params(k, c_in, c_out) / (k * k * c_in * c_out)
    assert ratio == pytest.approx(1 / c_out + 1 / k**2, rel=1e-12)


# ======================================================================================================
# RNNs
# ======================================================================================================


@reference("gru_cell")
@torch_test
@pytest.mark.parametrize(("batch", "n_in", "hidden"), [(None, 3, 4), (1, 2, 1), (5, 3, 7)])
def test_gru_cell_matches_torch_grucell_with_copied_weights(formulas, batch, n_in, hidden):
    rng = rng_for("gru", batch, n_in, hidden)
    cell = torch.nn.GRUCell(n_in, hidden, dtype=torch.float64)
    W_ih, W_hh = rng.normal(size=(3 * hidden, n_in)), rng.normal(size=(3 * hidden, hidden))
    b_ih, b_hh = rng.normal(size=3 * hidden), rng.normal(size=3 * hidden)
    with torch.no_grad():
        for p, value in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh),
                            (W_ih, W_hh, b_ih, b_hh), strict=True):
            p.copy_(t64(value))
    shape = (n_in,) if batch is None else (batch, n_in)
    x, h = rng.normal(size=shape), rng.normal(size=(*shape[:-1], hidden))
    close(formulas.gru_cell(x, h, W_ih, W_hh, b_ih, b_hh), to_np(cell(t64(x), t64(h))))


@reference("gru_cell")
def test_gru_cell_by_hand(formulas):
    # One unit: r = σ(0.5 + 0.5) = σ(1), z = σ(−1 + 0.5 − 0.5) = σ(−1),
    # n = tanh((0.5 − 1) + r·(2·0.5 + 1)); h′ = (1 − z)·n + z·0.5.
    r, z = special.expit(1.0), special.expit(-1.0)
    n = math.tanh(-0.5 + r * 2.0)
    got = formulas.gru_cell([0.5, -1.0], [0.5], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0], [-1.0], [2.0]],
                            [0.0, 0.5, 0.0], [0.0, 0.0, 1.0])
    close(got, [(1 - z) * n + z * 0.5])


# ======================================================================================================
# Transformers
# ======================================================================================================


def _rope_complex(x: np.ndarray, base: float) -> np.ndarray:
    """Meta's LLaMA reference: view feature pairs as complex numbers and multiply by e^{i·m·θ_j}."""
    n, d = x.shape[-2:]
    theta = base ** (-np.arange(0, d, 2) / d)
    rotation = np.exp(1j * np.arange(n)[:, None] * theta)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * rotation
    return np.stack([z.real, z.imag], axis=-1).reshape(x.shape)


@reference("rope")
@pytest.mark.parametrize(("shape", "base"), [((3, 4), 100.0), ((7, 6), 10000.0), ((2, 5, 8), 500000.0)])
def test_rope_equals_complex_rotation(formulas, shape, base):
    x = rng_for("rope", shape, base).normal(size=shape)
    close(formulas.rope(x, base=base), _rope_complex(x, base))


@reference("rope")
@torch_test
def test_rope_matches_hugging_face_rotate_half_after_permuting_features(formulas):
    # HF LLaMA pairs feature j with j + d/2 (rotate_half); permuting the features to [evens, odds] maps
    # the interleaved layout onto it.
    n, d, base = 9, 8, 10000.0
    x = rng_for("rope_hf").normal(size=(n, d))
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(n, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    perm = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])
    xh = t64(x[:, perm])
    rotate_half = torch.cat([-xh[:, d // 2:], xh[:, : d // 2]], dim=-1)
    want = to_np(xh * emb.cos() + rotate_half * emb.sin())
    close(formulas.rope(x, base=base)[:, perm], want)


@reference("rope")
def test_rope_scores_depend_only_on_relative_position(formulas):
    rng = rng_for("rope_relative")
    q, k = rng.normal(size=8), rng.normal(size=8)
    rq, rk = formulas.rope(np.tile(q, (10, 1))), formulas.rope(np.tile(k, (10, 1)))
    for m, n in [(3, 1), (9, 7), (2, 0)]:
        assert rq[m] @ rk[n] == pytest.approx(rq[m - n] @ rk[0], rel=1e-10)
    with pytest.raises(ValueError, match="even"):
        formulas.rope(np.ones((2, 3)))


@reference("kv_cache_bytes")
def test_kv_cache_bytes_by_hand(formulas):
    # Llama 2 7B: 32 layers, 32 KV heads of 128 → per token 2·32·32·128 = 262144 values = 512 KiB in fp16;
    # × 4096 tokens = 2 GiB.
    per_token = 2 * 32 * 32 * 128 * 2
    assert per_token == 512 * 1024
    assert formulas.kv_cache_bytes(32, 32, 128, 4096, 1) == per_token * 4096 == 2 * 2**30
    # GQA with 8 KV heads, batch 4, 8k tokens, fp32: 2·32·8·128·8192·4·4.
    assert formulas.kv_cache_bytes(32, 8, 128, 8192, 4, bytes_per_value=4) == 2 * 32 * 8 * 128 * 8192 * 4 * 4


@reference("kv_cache_bytes")
@torch_test
def test_kv_cache_bytes_equals_size_of_torch_cache_tensors(formulas):
    # Build the cache as a decoder stores it: per layer a K and a V tensor (B, n_kv, T, d_h) in bf16.
    n_layers, n_kv, d_h, T, B = 3, 2, 16, 11, 5
    cache = [(torch.zeros(B, n_kv, T, d_h, dtype=torch.bfloat16), torch.zeros(B, n_kv, T, d_h, dtype=torch.bfloat16))
             for _ in range(n_layers)]
    nbytes = sum(t.element_size() * t.numel() for kv in cache for t in kv)
    assert formulas.kv_cache_bytes(n_layers, n_kv, d_h, T, B) == nbytes


@reference("transformer_params")
@torch_test
@pytest.mark.parametrize(("n_layers", "d_model", "vocab"), [(2, 16, 0), (3, 32, 100), (1, 64, 7)])
def test_transformer_params_matches_torch_layers_without_biases_and_norms(formulas, n_layers, d_model, vocab):
    # nn.TransformerEncoderLayer(bias=False) holds exactly the 4d² + 8d² matrices plus LayerNorm weights.
    layer = torch.nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=4 * d_model, bias=False)
    matrices = sum(p.numel() for p in layer.parameters() if p.dim() == 2)
    norms = sum(p.numel() for p in layer.parameters() if p.dim() == 1)
    assert norms == 2 * d_model  # only the two LayerNorm weights are not matrices
    embedding = torch.nn.Embedding(vocab, d_model).weight.numel() if vocab else 0
    assert formulas.transformer_params(n_layers, d_model, vocab) == n_layers * matrices + embedding


@reference("transformer_params")
def test_transformer_params_by_hand(formulas):
    # GPT-2 small: 12 layers, d = 768: 12·12·768² = 84,934,656 in the blocks + 50257·768 = 38,597,376.
    assert formulas.transformer_params(12, 768, 50257) == 84_934_656 + 38_597_376
    assert formulas.transformer_params(96, 12288) == 12 * 96 * 12288**2  # GPT-3, non-embedding


@reference("training_flops")
def test_training_flops_by_hand(formulas):
    # Forward 2 FLOPs per parameter per token (multiply + add), backward 4: GPT-3, 175e9 params, 300e9 tokens.
    forward = 2 * 175e9 * 300e9
    assert formulas.training_flops(175e9, 300e9) == pytest.approx(3 * forward, rel=1e-15)
    assert formulas.training_flops(1000, 20) == 120_000


@reference("training_flops")
@torch_test
def test_training_flops_counts_a_linear_layer_with_torch_flop_counter(formulas):
    # For a bias-free linear layer, torch's FlopCounterMode counts forward + backward matmul FLOPs exactly;
    # N = d_in·d_out parameters, D = batch tokens.
    from torch.utils.flop_counter import FlopCounterMode

    d_in, d_out, tokens = 12, 7, 5
    layer = torch.nn.Linear(d_in, d_out, bias=False, dtype=torch.float64)
    x = torch.randn(tokens, d_in, dtype=torch.float64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    assert formulas.training_flops(d_in * d_out, tokens) == counter.get_total_flops()


@reference("temperature_softmax")
@torch_test
@pytest.mark.parametrize("T", [0.1, 0.5, 1.0, 2.0, 7.5])
@pytest.mark.parametrize("shape", [(5,), (3, 8)])
def test_temperature_softmax_matches_torch(formulas, T, shape):
    z = rng_for("temp", T, shape).normal(0, 3, size=shape)
    close(formulas.temperature_softmax(z, T), to_np(torch.softmax(t64(z) / T, dim=-1)))


@reference("temperature_softmax")
def test_temperature_softmax_by_hand(formulas):
    # Logits [0, ln 4] at T = 0.5 become [0, ln 16]: p = [1/17, 16/17].
    close(formulas.temperature_softmax([0.0, math.log(4)], 0.5), [1 / 17, 16 / 17])
    close(formulas.temperature_softmax([1.0, 2.0, 3.0], 1.0), special.softmax([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="positive"):
        formulas.temperature_softmax([1.0, 2.0], 0.0)


def _hf_top_p(probs: np.ndarray, p: float) -> np.ndarray:
    """Hugging Face TopPLogitsWarper, written with torch ops on log-probabilities, then renormalised."""
    scores = torch.log(t64(probs))
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -1:] = 0
    remove = remove_sorted.scatter(-1, sorted_indices, remove_sorted)
    return to_np(scores.masked_fill(remove, -float("inf")).softmax(dim=-1))


@reference("top_p_filter")
@torch_test
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("seed", range(3))
def test_top_p_filter_matches_hugging_face_warper(formulas, p, seed):
    probs = rng_for("top_p", p, seed).dirichlet(np.ones(12) * 0.5, size=4)
    close(formulas.top_p_filter(probs, p), _hf_top_p(probs, p))


@reference("top_p_filter")
def test_top_p_filter_by_hand(formulas):
    # Sorted: 0.5, 0.25, 0.15, 0.1. p = 0.7 → {0.5, 0.25} (mass 0.75); renormalised by 0.75.
    close(formulas.top_p_filter([0.1, 0.5, 0.15, 0.25], 0.7), [0.0, 0.5 / 0.75, 0.0, 0.25 / 0.75])
    close(formulas.top_p_filter([0.1, 0.5, 0.15, 0.25], 0.8), [0.0, 0.5 / 0.9, 0.15 / 0.9, 0.25 / 0.9])
    close(formulas.top_p_filter([0.1, 0.5, 0.15, 0.25], 1.0), [0.1, 0.5, 0.15, 0.25])
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            formulas.top_p_filter([0.5, 0.5], bad)


@reference("top_p_filter")
def test_top_p_filter_keeps_tied_tokens_together(formulas):
    # Mass strictly above each token: 0.4 → 0, each 0.3 → 0.4. p = 0.5: all kept; p = 0.4: only 0.4 (M < p).
    close(formulas.top_p_filter([0.3, 0.4, 0.3], 0.5), [0.3, 0.4, 0.3])
    close(formulas.top_p_filter([0.3, 0.4, 0.3], 0.4), [0.0, 1.0, 0.0])
    rng = rng_for("top_p_ties")
    for _ in range(20):
        probs = rng.integers(1, 5, size=9).astype(float)
        probs /= probs.sum()
        p = rng.uniform(0.05, 1.0)
        above = np.array([probs[probs > v].sum() for v in probs])  # Mᵢ by its definition
        keep = above < p
        close(formulas.top_p_filter(probs, p), np.where(keep, probs, 0.0) / probs[keep].sum())


@reference("lora_forward")
@torch_test
@pytest.mark.parametrize(("n", "d_in", "d_out", "r"), [(1, 3, 2, 1), (4, 8, 5, 2), (6, 16, 16, 4)])
def test_lora_forward_matches_torch_linear_plus_low_rank_update(formulas, n, d_in, d_out, r):
    rng = rng_for("lora", n, d_in, d_out, r)
    x, W0 = rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in))
    A, B, alpha = rng.normal(size=(r, d_in)), rng.normal(size=(d_out, r)), 16.0
    base = torch.nn.Linear(d_in, d_out, bias=False, dtype=torch.float64)
    lora_A = torch.nn.Linear(d_in, r, bias=False, dtype=torch.float64)
    lora_B = torch.nn.Linear(r, d_out, bias=False, dtype=torch.float64)
    with torch.no_grad():
        base.weight.copy_(t64(W0))
        lora_A.weight.copy_(t64(A))
        lora_B.weight.copy_(t64(B))
    want = base(t64(x)) + (alpha / r) * lora_B(lora_A(t64(x)))  # Hugging Face PEFT's lora.Linear forward
    close(formulas.lora_forward(x, W0, A, B, alpha), to_np(want))
    merged = W0 + (alpha / r) * B @ A
    close(formulas.lora_forward(x, W0, A, B, alpha), x @ merged.T)


@reference("dpo_loss")
@torch_test
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("n", [1, 8])
def test_dpo_loss_matches_torch(formulas, beta, n):
    rng = rng_for("dpo", beta, n)
    logp_w, logp_l, ref_w, ref_l = -rng.uniform(1, 50, size=(4, n))
    margin = (t64(logp_w) - t64(ref_w)) - (t64(logp_l) - t64(ref_l))
    want = (-F.logsigmoid(beta * margin)).mean().item()
    close(formulas.dpo_loss(logp_w, logp_l, ref_w, ref_l, beta=beta), want)


@reference("dpo_loss")
def test_dpo_loss_by_hand(formulas):
    # Margin (−1 + 1.5) − (−2 + 1.5) = 1; β = 0.5 → −log σ(0.5) = log(1 + e^{−0.5}).
    close(formulas.dpo_loss(-1.0, -2.0, -1.5, -1.5, beta=0.5), math.log1p(math.exp(-0.5)))
    # Default β = 0.1; a huge margin gives 0 without overflow, a huge negative one gives −β·margin.
    close(formulas.dpo_loss(-1.0, -2.0, -1.5, -1.5), math.log1p(math.exp(-0.1)))
    assert formulas.dpo_loss(0.0, -1e6, 0.0, 0.0) == 0.0
    close(formulas.dpo_loss(-1e6, 0.0, 0.0, 0.0), 0.1 * 1e6)


# ======================================================================================================
# Recommender systems
# ======================================================================================================


@reference("in_batch_softmax_loss")
@torch_test
@pytest.mark.parametrize(("B", "k"), [(1, 3), (4, 8), (16, 5)])
@pytest.mark.parametrize("tau", [1.0, 0.5, 0.05])
def test_in_batch_softmax_loss_matches_torch_cross_entropy(formulas, B, k, tau):
    rng = rng_for("in_batch", B, k, tau)
    users, items = rng.normal(size=(B, k)), rng.normal(size=(B, k))
    want = F.cross_entropy(t64(users) @ t64(items).T / tau, torch.arange(B)).item()
    close(formulas.in_batch_softmax_loss(users, items, tau=tau), want)


@reference("in_batch_softmax_loss")
def test_in_batch_softmax_loss_by_hand(formulas):
    # Two users, two items, scores S = U Iᵀ = [[2, 0], [0, 1]]: −½[log(e²/(e² + 1)) + log(e/(1 + e))].
    want = -0.5 * (math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.e / (1 + math.e)))
    close(formulas.in_batch_softmax_loss([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]]), want)


@reference("bpr_loss")
@torch_test
@pytest.mark.parametrize("n", [1, 10, 100])
def test_bpr_loss_matches_torch(formulas, n):
    pos, neg = rng_for("bpr", n).normal(0, 3, size=(2, n))
    close(formulas.bpr_loss(pos, neg), (-F.logsigmoid(t64(pos) - t64(neg))).mean().item())


@reference("bpr_loss")
def test_bpr_loss_by_hand(formulas):
    # σ(ln 3) = 3/4 → −ln(3/4); equal scores → ln 2.
    close(formulas.bpr_loss([math.log(3)], [0.0]), -math.log(0.75))
    close(formulas.bpr_loss([1.0, 2.0], [1.0, 2.0]), math.log(2))
    close(formulas.bpr_loss([1000.0], [-1000.0]), 0.0)


@reference("biased_mf_predict")
def test_biased_mf_predict_by_hand(formulas):
    # Koren, Bell & Volinsky's example: μ = 3.7, Joe rates 0.3 below average, Titanic 0.5 above → 3.9.
    close(float(formulas.biased_mf_predict(3.7, -0.3, 0.5, [0.0, 0.0], [0.4, 0.2])), 3.9)
    # With factors: μ + b_u + b_i + p·q = 3.5 − 0.3 + 0.5 + (1·0.5 + 2·0.25) = 4.7.
    close(float(formulas.biased_mf_predict(3.5, -0.3, 0.5, [1.0, 2.0], [0.5, 0.25])), 4.7)


@reference("biased_mf_predict")
@torch_test
def test_biased_mf_predict_matches_torch_embedding_model(formulas):
    # The usual torch model: embeddings for users and items, bias embeddings, a global mean.
    rng = rng_for("biased_mf")
    n_users, n_items, k = 5, 7, 4
    P, Q = rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k))
    bu, bi, mu = rng.normal(size=n_users), rng.normal(size=n_items), 3.4
    users, items = torch.tensor([0, 3, 4, 4, 1]), torch.tensor([6, 0, 2, 5, 5])
    user_emb, item_emb = torch.nn.Embedding.from_pretrained(t64(P)), torch.nn.Embedding.from_pretrained(t64(Q))
    want = mu + t64(bu)[users] + t64(bi)[items] + (user_emb(users) * item_emb(items)).sum(dim=1)
    got = formulas.biased_mf_predict(mu, bu[users.numpy()], bi[items.numpy()], P[users.numpy()], Q[items.numpy()])
    close(got, to_np(want))


# ======================================================================================================
# System design
# ======================================================================================================


@reference("ab_test_sample_size")
@pytest.mark.parametrize(("sigma", "delta", "alpha", "power"), [
    (1.0, 0.1, 0.05, 0.8), (math.sqrt(0.09), 0.01, 0.05, 0.8), (2.0, 0.5, 0.01, 0.9),
    (3.5, 0.2, 0.1, 0.95), (1.0, 0.05, 0.001, 0.99), (10.0, 1.0, 1e-12, 0.8),
])
def test_ab_test_sample_size_matches_scipy_quantiles(formulas, sigma, delta, alpha, power):
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    exact = 2 * (z_alpha + z_power) ** 2 * sigma**2 / delta**2
    assert abs(exact - round(exact)) > 1e-6  # not on an integer: the ceiling is unambiguous
    assert formulas.ab_test_sample_size(sigma, delta, alpha=alpha, power=power) == math.ceil(exact)


@reference("ab_test_sample_size")
def test_ab_test_sample_size_quantiles_to_full_precision(formulas):
    # Check the built-in quantile through the result: choose σ/δ so n is just above or below an integer.
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    for target in (1000.0 + 1e-7, 1000.0 - 1e-7, 25.0 + 1e-9, 40000.0 - 1e-6):
        sigma = math.sqrt(target / (2 * z**2))  # δ = 1
        assert formulas.ab_test_sample_size(sigma, 1.0) == math.ceil(target)
    # Python's statistics.NormalDist gives the same z values (both use Wichura's AS 241).
    from statistics import NormalDist

    assert NormalDist().inv_cdf(0.975) == pytest.approx(stats.norm.ppf(0.975), rel=1e-15)


@reference("psi")
@pytest.mark.parametrize("bins", [2, 5, 10])
@pytest.mark.parametrize("seed", range(3))
def test_psi_equals_symmetric_kl_from_scipy(formulas, bins, seed):
    rng = rng_for("psi", bins, seed)
    e, a = rng.dirichlet(np.ones(bins)), rng.dirichlet(np.ones(bins))
    want = stats.entropy(a, e) + stats.entropy(e, a)  # KL(a‖e) + KL(e‖a) = Σ (a − e) ln(a/e)
    close(formulas.psi(e, a), want)
    close(formulas.psi(e * 1000, a * 37), want)  # counts are turned into fractions


@reference("psi")
def test_psi_by_hand(formulas):
    # Bins 50/30/20 % → 20/30/50 %: (0.2 − 0.5) ln(0.4) + 0 + (0.5 − 0.2) ln(2.5) = 0.6 ln 2.5.
    close(formulas.psi([0.5, 0.3, 0.2], [0.2, 0.3, 0.5]), 0.6 * math.log(2.5))
    assert formulas.psi([0.25] * 4, [0.25] * 4) == 0.0


@reference("psi")
def test_psi_empty_bins_without_warnings(formulas):
    # Empty in both: the bin contributes 0 (its limit); empty on one side only: infinite. No RuntimeWarning
    # (pytest turns warnings into errors here).
    close(formulas.psi([0.5, 0.5, 0.0], [0.4, 0.6, 0.0]), 0.1 * math.log(1.2) - 0.1 * math.log(0.8))
    assert formulas.psi([0.5, 0.5], [1.0, 0.0]) == math.inf
