"""Record PyTorch reference results, so tests/test_reference.py can check them where torch is absent.

Run with torch installed: `.venv/bin/python tests/reference/make_reference.py`. It writes recorded.json
next to this file: for each case, the inputs and the outputs computed by PyTorch (float64, CPU, fixed
seeds). Expected values come from torch only; this script never imports sheetgen or its generated module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent / "recorded.json"
SEED = 0
f64 = torch.float64


def t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=f64)


def lst(x: Any) -> Any:
    """JSON-ready nested lists (json writes floats with repr, so float64 values round-trip exactly)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    return np.asarray(x).tolist()


def rnn_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for batch, n_in, n_hidden in [(None, 3, 4), (5, 4, 6)]:
        cell = torch.nn.RNNCell(n_in, n_hidden, nonlinearity="tanh").double()
        shape_x = (n_in,) if batch is None else (batch, n_in)
        shape_h = (n_hidden,) if batch is None else (batch, n_hidden)
        x, h = rng.normal(size=shape_x), rng.normal(size=shape_h)
        out = cell(t(x), t(h))
        cases.append({
            "inputs": {"x": lst(x), "h": lst(h), "W_ih": lst(cell.weight_ih), "W_hh": lst(cell.weight_hh),
                       "b_ih": lst(cell.bias_ih), "b_hh": lst(cell.bias_hh)},
            "expected": {"h": lst(out)},
        })
    return cases


def lstm_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for batch, n_in, n_hidden in [(None, 3, 4), (5, 4, 6)]:
        cell = torch.nn.LSTMCell(n_in, n_hidden).double()
        shape_x = (n_in,) if batch is None else (batch, n_in)
        shape_h = (n_hidden,) if batch is None else (batch, n_hidden)
        x, h, c = rng.normal(size=shape_x), rng.normal(size=shape_h), rng.normal(size=shape_h)
        h_new, c_new = cell(t(x), (t(h), t(c)))
        cases.append({
            "inputs": {"x": lst(x), "h": lst(h), "c": lst(c), "W_ih": lst(cell.weight_ih),
                       "W_hh": lst(cell.weight_hh), "b_ih": lst(cell.bias_ih), "b_hh": lst(cell.bias_hh)},
            "expected": {"h": lst(h_new), "c": lst(c_new)},
        })
    return cases


def multi_head_attention_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for n_q, n_kv, embed, heads in [(4, 6, 8, 2), (3, 3, 12, 4)]:
        mha = torch.nn.MultiheadAttention(embed, heads, bias=False, batch_first=True).double()
        W_q, W_k, W_v = mha.in_proj_weight.detach().chunk(3)
        W_o = mha.out_proj.weight.detach()
        q, k, v = rng.normal(size=(n_q, embed)), rng.normal(size=(n_kv, embed)), rng.normal(size=(n_kv, embed))
        out, _ = mha(t(q)[None], t(k)[None], t(v)[None], need_weights=False)
        cases.append({
            "inputs": {"q": lst(q), "k": lst(k), "v": lst(v), "W_q": lst(W_q), "W_k": lst(W_k),
                       "W_v": lst(W_v), "W_o": lst(W_o), "n_heads": heads},
            "expected": {"out": lst(out[0])},
        })
    return cases


def attention_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for batch, n_q, n_k, d_k, d_v, masked in [((), 3, 4, 5, 2, False), ((2, 3), 4, 6, 5, 7, True)]:
        Q = rng.normal(size=(*batch, n_q, d_k))
        K = rng.normal(size=(*batch, n_k, d_k))
        V = rng.normal(size=(*batch, n_k, d_v))
        mask = None
        if masked:
            mask = rng.random((n_q, n_k)) < 0.6
            mask[:, 0] = True  # every query attends to at least one key (a fully masked row is undefined)
        out = F.scaled_dot_product_attention(
            t(Q), t(K), t(V), attn_mask=None if mask is None else torch.tensor(mask)
        )
        cases.append({
            "inputs": {"Q": lst(Q), "K": lst(K), "V": lst(V), "mask": None if mask is None else lst(mask)},
            "expected": {"out": lst(out)},
        })
    return cases


def optimizer_cases(rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    theta0 = rng.normal(size=5)
    grads = rng.normal(size=(3, 5))
    tiny_grads = rng.normal(size=(3, 5)) * 1e-9  # here ε's place (inside or outside √) changes the result

    def run(opt_cls: type[torch.optim.Optimizer], gs: np.ndarray, state_keys: tuple[str, ...],
            **kwargs: Any) -> dict[str, Any]:
        p = torch.tensor(theta0, dtype=f64, requires_grad=True)
        opt = opt_cls([p], **kwargs)
        trace: dict[str, list[Any]] = {"theta": [], **{k: [] for k in state_keys}}
        for g in gs:
            p.grad = t(g)
            opt.step()
            trace["theta"].append(lst(p))
            for k in state_keys:
                trace[k].append(lst(opt.state[p][k]))
        return trace

    adam = []
    for gs, hyper in [(grads, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
                      (grads, {"lr": 0.1, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}),
                      (tiny_grads, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})]:
        trace = run(torch.optim.Adam, gs, ("exp_avg", "exp_avg_sq"), lr=hyper["lr"],
                    betas=(hyper["beta1"], hyper["beta2"]), eps=hyper["eps"], foreach=False)
        adam.append({"inputs": {"theta": lst(theta0), "grads": lst(gs), **hyper},
                     "expected": {"theta": trace["theta"], "m": trace["exp_avg"], "v": trace["exp_avg_sq"]}})
    momentum_trace = run(torch.optim.SGD, grads, ("momentum_buffer",), lr=0.05, momentum=0.9, foreach=False)
    sgd_trace = run(torch.optim.SGD, grads, (), lr=0.05, foreach=False)
    return {
        "adam_step": adam,
        "momentum_step": [{"inputs": {"theta": lst(theta0), "grads": lst(grads), "lr": 0.05, "beta": 0.9},
                           "expected": {"theta": momentum_trace["theta"],
                                        "v": momentum_trace["momentum_buffer"]}}],
        "sgd_step": [{"inputs": {"theta": lst(theta0), "grads": lst(grads), "lr": 0.05},
                      "expected": {"theta": sgd_trace["theta"]}}],
    }


def batch_norm_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for n, d, eps in [(8, 3, 1e-5), (2, 5, 1e-3)]:
        x, gamma, beta = rng.normal(2, 3, size=(n, d)), rng.normal(size=d), rng.normal(size=d)
        out = F.batch_norm(t(x), None, None, weight=t(gamma), bias=t(beta), training=True, eps=eps)
        cases.append({"inputs": {"x": lst(x), "gamma": lst(gamma), "beta": lst(beta), "eps": eps},
                      "expected": {"out": lst(out)}})
    return cases


def softmax_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    z = rng.normal(size=(3, 4)) * 1000  # logits in the thousands: exp overflows without max-subtraction
    z[0] = [1000.0, 1000.0, -1000.0, 0.0]
    cases = []
    for axis in (-1, 0):
        cases.append({"inputs": {"z": lst(z), "axis": axis}, "expected": {"out": lst(torch.softmax(t(z), axis))}})
    return cases


def conv_cases() -> dict[str, list[dict[str, Any]]]:
    sizes = []
    # Combinations where the floor in ⌊(W − K + 2P)/S⌋ + 1 matters (odd remainders), plus common layers.
    for w, k, p, s in [(7, 3, 0, 2), (8, 3, 0, 2), (8, 3, 1, 2), (5, 5, 0, 1), (224, 7, 3, 2), (32, 3, 1, 1),
                       (10, 4, 2, 3), (11, 2, 0, 4), (6, 1, 0, 5)]:
        conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, bias=False).double()
        out = conv(torch.zeros(1, 1, w, w, dtype=f64))
        sizes.append({"inputs": {"w": w, "k": k, "p": p, "s": s}, "expected": {"out": int(out.shape[-1])}})
    params = []
    for k, c_in, c_out in [(3, 3, 64), (1, 64, 256), (5, 16, 8)]:
        conv = torch.nn.Conv2d(c_in, c_out, k)
        params.append({"inputs": {"k": k, "c_in": c_in, "c_out": c_out},
                       "expected": {"with_bias": sum(p.numel() for p in conv.parameters()),
                                    "weights_only": conv.weight.numel()}})
    return {"conv_output_size": sizes, "conv_params": params}


def dumps(value: Any, indent: str = "") -> str:
    """JSON with one innermost list (a matrix row) per line: readable diffs, a compact file."""
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" if items else "{}"
    if isinstance(value, list) and any(isinstance(v, list | dict) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)


def main() -> None:
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    cases: dict[str, Any] = {
        "rnn_cell": rnn_cases(rng),
        "lstm_cell": lstm_cases(rng),
        "multi_head_attention": multi_head_attention_cases(rng),
        "attention": attention_cases(rng),
        **optimizer_cases(rng),
        "batch_norm": batch_norm_cases(rng),
        "softmax": softmax_cases(rng),
        **conv_cases(),
    }
    recorded = {
        "about": "Inputs and PyTorch outputs (float64, CPU) for tests/test_reference.py; "
                 "regenerate with `.venv/bin/python tests/reference/make_reference.py`.",
        "torch_version": torch.__version__,
        "seed": SEED,
        "cases": cases,
    }
    OUT.write_text(dumps(recorded) + "\n")
    print(f"wrote {OUT} ({sum(len(v) for v in cases.values())} cases)")


if __name__ == "__main__":
    main()
