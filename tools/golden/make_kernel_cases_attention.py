#!/usr/bin/env python3
"""Reference values of transformers' VitsAttention (multi-head self-attention with windowed
relative-position embeddings), for tests/engine/test_ops_elementwise.cpp.

Writes tests/data/kernels/attention_cases.txt, one array per line (the format of torch_nn_cases.txt):
    name ndim d0 .. d{ndim-1} v0 v1 ...
Values are repr() of float64 numbers, so they round-trip exactly.

Each case runs a randomly initialised VitsAttention (hidden_size 8, 2 heads, window_size 4, in
float64, eval mode) on random hidden states with a padding mask, the encoder's way
(attention_mask = _prepare_4d_attention_mask(padding_mask)). For each case <case>:
  <case>.params         [window]
  <case>.hidden         [B, T, 8]       module input
  <case>.mask           [B, T]          1 for tokens, 0 for padding (case t3's last item has no tokens)
  <case>.{q,k,v,out}_proj.{weight,bias}, <case>.emb_rel_k, <case>.emb_rel_v [1, 9, 4]
  <case>.q, .k, .v      [B, 2, T, 4]    projected states (q multiplied by head_dim^-0.5)
  <case>.rel_logits     [B*2, T, T]     the relative-key term added to q.k (rel_pos_bias)
  <case>.probs          [B, 2, T, T]    attention probabilities (output_attentions)
  <case>.core           [B, T, 8]       attention output before out_proj (heads concatenated)
  <case>.y              [B, T, 8]       module output
  <case>.r              [B, T, 8]       fixed random weights
  <case>.d<name>        autograd gradient of L = sum(y * r) with respect to hidden, emb_rel_k,
                        emb_rel_v and the four projections' weights and biases

Usage (from the repository root): python3 tools/golden/make_kernel_cases_attention.py
"""
import os

import torch
from transformers import VitsConfig
from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask
from transformers.models.vits.modeling_vits import VitsAttention

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "kernels", "attention_cases.txt")

WINDOW = 4
# name, T, token counts per item
CASES = [
    ("t1", 1, [1]),
    ("t3", 3, [3, 2, 0]),
    ("t7", 7, [7, 5]),
    ("t12", 12, [12, 9]),
]


def fmt(name, t):
    t = t.detach().to(torch.float64).contiguous()
    shape = list(t.shape)
    return " ".join([name, str(len(shape))] + [str(d) for d in shape] + [repr(float(v)) for v in t.reshape(-1)])


def make_case(name, T, lengths):
    config = VitsConfig(hidden_size=8, num_attention_heads=2, window_size=WINDOW, attention_dropout=0.0)
    attn = VitsAttention(config).double().eval()
    B, E, H = len(lengths), config.hidden_size, config.num_attention_heads
    Dh = E // H
    hidden = torch.randn(B, T, E, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(B, T, dtype=torch.float64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1.0
    r = torch.randn(B, T, E, dtype=torch.float64)

    captured = {}

    def keep(key):
        def hook(module, args, output):
            captured[key] = output.detach()

        return hook

    hooks = [getattr(attn, f"{p}_proj").register_forward_hook(keep(p)) for p in ("q", "k", "v")]
    hooks.append(attn.out_proj.register_forward_hook(lambda m, args, out: captured.__setitem__("core", args[0].detach())))
    y, probs = attn(hidden, attention_mask=_prepare_4d_attention_mask(mask, torch.float64), output_attentions=True)
    for h in hooks:
        h.remove()
    (y * r).sum().backward()

    def heads(t):  # [B, T, E] -> [B, H, T, Dh]
        return t.view(B, T, H, Dh).transpose(1, 2)

    q = heads(captured["q"] * attn.scaling)
    k, v = heads(captured["k"]), heads(captured["v"])
    with torch.no_grad():
        rel_emb = attn._get_relative_embeddings(attn.emb_rel_k, T)
        rel_logits = attn._relative_position_to_absolute_position(
            torch.matmul(q.reshape(B * H, T, Dh), rel_emb.transpose(-2, -1))
        )

    params = {n: p for n, p in attn.named_parameters()}
    lines = [fmt(f"{name}.params", torch.tensor([WINDOW])), fmt(f"{name}.hidden", hidden), fmt(f"{name}.mask", mask)]
    for n, p in params.items():
        lines.append(fmt(f"{name}.{n}", p))
    lines += [
        fmt(f"{name}.q", q),
        fmt(f"{name}.k", k),
        fmt(f"{name}.v", v),
        fmt(f"{name}.rel_logits", rel_logits),
        fmt(f"{name}.probs", probs),
        fmt(f"{name}.core", captured["core"]),
        fmt(f"{name}.y", y),
        fmt(f"{name}.r", r),
        fmt(f"{name}.dhidden", hidden.grad),
    ]
    for n, p in params.items():
        lines.append(fmt(f"{name}.d{n}", p.grad))
    return lines


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    lines = []
    for case in CASES:
        lines += make_case(*case)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(lines)} arrays)")


if __name__ == "__main__":
    main()
