"""The model core: a small decoder-only transformer with ALiBi and a ring-buffer KV cache.

One module serves training and inference, and scripts to TorchScript as a whole:

- `forward(tokens)` / `forward_embeddings(emb)`: the whole sequence at once, causal within a sliding
  window of `window` positions (training, evaluation, and the reference the cache is tested against);
- `prefill(tokens, pos)` and `decode(token, pos)`: the incremental paths over the KV cache.

Positions are ALiBi biases (`-slope_h * distance`), so nothing depends on the absolute position: a
session can run for hours with no precision loss. The KV cache is a preallocated ring of
S = `window + max_rollback` slots per layer, written in place: the token at absolute position p
goes to slot p % S, and is written twice, at that slot and at slot + S of a buffer of 2S, so that
the window of the token at p, positions (p - window, p], is always ONE contiguous slice of the
buffer. Attention is then exactly sliding-window attention over that slice: no mask, no stale
slots, a constant ALiBi bias, the same work for every token once the window is full (per-token cost
flat forever), bounded memory, the context slides with no re-prefill, and rolling back by up to
`max_rollback` positions is exact (the positions after the rollback point are never read again
before they are rewritten, so rollback itself has nothing to do in the model).

The cache is allocated by `reset()` on the device and dtype of the weights (call it after `.to()`),
so the saved file holds only weights. Optional conditioning: if `cond_dim > 0`, a projection of a
condition vector is added to every position's embedding (`set_condition(z)` for the incremental paths).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 0  # key/value heads (grouped-query attention; 1 = multi-query); 0 = n_heads
    d_ff: int = 1024
    window: int = 1024  # attention window: each token sees itself and the window - 1 before it
    max_rollback: int = 256  # how far a session can roll back; also the longest prefill chunk
    dropout: float = 0.0
    cond_dim: int = 0  # size of the optional condition vector (style / latent); 0 = none

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or self.d_model < 1 or self.n_layers < 1 or self.d_ff < 1:
            raise ValueError("vocab_size, d_model, n_layers and d_ff must be positive")
        if self.n_heads < 1 or self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")
        if self.window < 1 or self.max_rollback < 1:
            raise ValueError("window and max_rollback must be positive")
        if self.n_kv_heads < 0 or self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads {self.n_heads} must be a multiple of n_kv_heads {self.n_kv_heads}")
        if not 0.0 <= self.dropout < 1.0 or self.cond_dim < 0:
            raise ValueError("dropout must be in [0, 1) and cond_dim >= 0")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def slots(self) -> int:
        return self.window + self.max_rollback

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)


def alibi_slopes(n_heads: int) -> List[float]:
    """The ALiBi paper's geometric slopes (powers of two; the non-power-of-two rule of the paper)."""

    def power_of_two(n: int) -> List[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_two(n_heads)
    lower = 2 ** math.floor(math.log2(n_heads))
    return power_of_two(lower) + power_of_two(2 * lower)[0::2][: n_heads - lower]


def window_bias(slopes: Tensor, q_pos: Tensor, k_pos: Tensor, window: int) -> Tensor:
    """ALiBi bias with the sliding-window causal mask: (nh, Tq, Tk), -inf outside (q - window, q]."""
    rel = k_pos.unsqueeze(0) - q_pos.unsqueeze(1)  # (Tq, Tk)
    bias = slopes.view(-1, 1, 1) * rel.to(slopes.dtype).unsqueeze(0)  # (nh, Tq, Tk)
    return bias.masked_fill(((rel > 0) | (rel <= -window)).unsqueeze(0), float("-inf"))


class Block(nn.Module):
    """Pre-LN transformer block with grouped-query attention. Owns its layer's KV ring buffer.

    `n_kv_heads` key/value heads serve `n_heads` query heads, `group = n_heads // n_kv_heads` each
    (query head h reads kv head h // group). With one kv head (multi-query attention) the cache a
    decode step reads is n_heads times smaller: at a full 1024-token window it is the difference
    between streaming 8 MB of cache per token next to 13 MB of weights, and 2 MB.

    Linear weights are stored (in, out), so the batch-1 decode step is a row-vector times a
    contiguous matrix (`addmm(b, x, w)`), which lets the residual add fuse into the output projections.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        C, F_ = cfg.d_model, cfg.d_ff
        self.n_heads = cfg.n_heads
        self.n_kv = cfg.kv_heads
        self.group = cfg.n_heads // cfg.kv_heads
        self.d_model = C
        self.head_size = C // cfg.n_heads
        self.kv_size = self.n_kv * self.head_size  # width of the k (and of the v) projection
        self.slots = cfg.slots
        self.scale = 1.0 / math.sqrt(self.head_size)
        self.dropout = cfg.dropout
        self.ln1 = nn.LayerNorm(C)
        self.attn_w = nn.Parameter(torch.empty(C, C + 2 * self.kv_size))  # fused q, k, v (in, out)
        self.attn_b = nn.Parameter(torch.zeros(C + 2 * self.kv_size))
        self.proj_w = nn.Parameter(torch.empty(C, C))  # no bias: the residual add fuses (addmm)
        self.ln2 = nn.LayerNorm(C)
        self.fc_w = nn.Parameter(torch.empty(C, F_))
        self.fc_b = nn.Parameter(torch.zeros(F_))
        self.fc2_w = nn.Parameter(torch.empty(F_, C))
        # the layer's KV ring buffer, allocated by the model's reset(): one row per slot, [k | v] of
        # the token there (each kv head's hs values); every token is written at slot s and s + S
        self.register_buffer("kv", torch.zeros(0), persistent=False)  # (2S, 2 kv hs)
        self.register_buffer("kv_pair", torch.zeros(0), persistent=False)  # (2, S, 2 kv hs): a view of kv

    # ---- whole sequence (training / reference) ------------------------------------------------
    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        B, T, C = x.shape
        nh, kv, hs = self.n_heads, self.n_kv, self.head_size
        qkv = torch.matmul(self.ln1(x), self.attn_w) + self.attn_b  # (B, T, C + 2 kv hs)
        q = qkv[:, :, :C].view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = qkv[:, :, C:C + self.kv_size].view(B, T, kv, hs).transpose(1, 2)  # (B, kv, T, hs)
        v = qkv[:, :, C + self.kv_size:].view(B, T, kv, hs).transpose(1, 2)  # (B, kv, T, hs)
        if self.group > 1:  # query head h reads kv head h // group
            k = k.unsqueeze(2).expand(B, kv, self.group, T, hs).reshape(B, nh, T, hs)
            v = v.unsqueeze(2).expand(B, kv, self.group, T, hs).reshape(B, nh, T, hs)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        x = x + F.dropout(torch.matmul(y, self.proj_w), p, self.training)
        h = F.gelu(torch.matmul(self.ln2(x), self.fc_w) + self.fc_b, approximate="tanh")  # (B, T, d_ff)
        return x + F.dropout(torch.matmul(h, self.fc2_w), p, self.training)

    # ---- incremental paths over the ring buffer ---------------------------------------------------
    def attend(self, q: Tensor, bias: Tensor, start: int, n: int) -> Tensor:
        """q (kv, m, hs), m query rows per kv head, over ring slots [start, start + n) -> (kv, m, hs)."""
        kv, hs = self.n_kv, self.head_size
        win = self.kv[start : start + n]  # (n, 2 kv hs)
        k = win[:, : self.kv_size].view(n, kv, hs).permute(1, 2, 0)  # (kv, hs, n)
        v = win[:, self.kv_size :].view(n, kv, hs).transpose(0, 1)  # (kv, n, hs)
        att = torch.baddbmm(bias, q, k, alpha=self.scale)  # (kv, m, n)
        return torch.bmm(torch.softmax(att, dim=-1), v)  # (kv, m, hs)

    def prefill(self, x: Tensor, bias: Tensor, slots: Tensor, start: int, n: int) -> Tensor:
        """x (T, C) written at buffer slots `slots` (2T,: each twice); attends over slots [start, start + n).

        `bias` is (n_kv, group * T, n): the (nh, T, n) ALiBi bias with the heads of a group side by side.
        """
        T, C = x.shape
        kv, g, hs = self.n_kv, self.group, self.head_size
        qkv = torch.addmm(self.attn_b, F.layer_norm(x, (C,), self.ln1.weight, self.ln1.bias), self.attn_w)
        q = qkv[:, :C].reshape(T, kv, g, hs).permute(1, 2, 0, 3).reshape(kv, g * T, hs)  # (kv, g T, hs)
        rows = qkv[:, C:]  # (T, 2 kv hs): [k | v] per token
        self.kv.index_copy_(0, slots, torch.cat([rows, rows], dim=0))
        y = self.attend(q, bias, start, n)  # (kv, g T, hs)
        y = y.view(kv, g, T, hs).permute(2, 0, 1, 3).reshape(T, C)  # (T, C): heads in order h = kv_i g + j
        x = torch.addmm(x, y, self.proj_w)  # (T, C)
        h = F.layer_norm(x, (C,), self.ln2.weight, self.ln2.bias)
        h = F.gelu(torch.addmm(self.fc_b, h, self.fc_w), approximate="tanh")  # (T, d_ff)
        return torch.addmm(x, h, self.fc2_w)  # (T, C)

    def decode(self, x: Tensor, bias: Tensor, slot: int, start: int, n: int) -> Tensor:
        """x (1, C), the token written at ring slot `slot` (and slot + S); attends over [start, start + n).

        `bias` is (n_kv, group, n).
        """
        C = self.d_model
        qkv = torch.addmm(self.attn_b, F.layer_norm(x, (C,), self.ln1.weight, self.ln1.bias), self.attn_w)
        self.kv_pair[:, slot] = qkv[:, C:]  # both copies of the token's [k | v] row in one write
        y = self.attend(qkv[:, :C].view(self.n_kv, self.group, self.head_size), bias, start, n)  # (kv, g, hs)
        x = torch.addmm(x, y.view(1, C), self.proj_w)  # (1, C)
        h = F.layer_norm(x, (C,), self.ln2.weight, self.ln2.bias)
        h = F.gelu(torch.addmm(self.fc_b, h, self.fc_w), approximate="tanh")  # (1, d_ff)
        return torch.addmm(x, h, self.fc2_w)  # (1, C)


class TransformerLM(nn.Module):
    """Decoder-only transformer LM over the sideman vocabulary. See the module docstring."""

    __jit_ignored_attributes__ = ["config"]

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.vocab_size = cfg.vocab_size
        self.d_model = cfg.d_model
        self.n_heads = cfg.n_heads
        self.n_kv = cfg.kv_heads
        self.window = cfg.window
        self.max_rollback = cfg.max_rollback
        self.slots = cfg.slots
        self.cond_dim = cfg.cond_dim
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        # the head is tied to the embedding: logits = x @ wte.weight.T
        self.cond_proj = nn.Linear(max(cfg.cond_dim, 1), cfg.d_model) if cfg.cond_dim > 0 else nn.Identity()
        self.register_buffer("slopes", torch.tensor(alibi_slopes(cfg.n_heads)), persistent=False)  # (nh,)
        self.register_buffer("alibi", torch.zeros(0), persistent=False)  # (n_kv, group, window): decode's bias
        self.origin = -1  # the first position written since reset(); nothing before it exists
        self.register_buffer("cond_emb", torch.zeros(1, cfg.d_model), persistent=False)  # (1, C)
        self._init_weights(cfg)

    def _init_weights(self, cfg: ModelConfig) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2:  # weights: embedding and (in, out) matrices
                std = 0.02 / math.sqrt(2 * cfg.n_layers) if name.endswith(("proj_w", "fc2_w")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith(("bias", "_b")):
                nn.init.zeros_(p)

    # ---- whole sequence ---------------------------------------------------------------------------
    def embed(self, tokens: Tensor) -> Tensor:
        """Token embeddings (B, T, C): perturb these for adversarial training, then `forward_embeddings`."""
        return self.wte(tokens)

    def forward_embeddings(self, emb: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """emb (B, T, C) -> logits (B, T, V), causal within the sliding window."""
        B, T, C = emb.shape
        x = emb
        if cond is not None and self.cond_dim > 0:
            if cond.dim() == 3:  # (B, T, cond_dim): a condition per position (the restyle model's per-bar z)
                x = x + self.cond_proj(cond)
            else:  # (B, cond_dim): one for the whole sequence
                x = x + self.cond_proj(cond).view(B, 1, C)
        pos = torch.arange(T, device=emb.device)
        bias = window_bias(self.slopes.to(emb.dtype), pos, pos, self.window)  # (nh, T, T)
        for block in self.blocks:
            x = block(x, bias)
        return F.linear(self.ln_f(x), self.wte.weight)  # (B, T, V)

    def forward(self, tokens: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """tokens (B, T) long -> logits (B, T, V). `cond` (B, cond_dim) or (B, T, cond_dim) when cond_dim > 0."""
        return self.forward_embeddings(self.wte(tokens), cond)

    # ---- incremental inference ---------------------------------------------------------------------
    @torch.jit.export
    def reset(self) -> None:
        """(Re)allocate an empty KV cache on the weights' device and dtype."""
        w = self.wte.weight
        hs = self.d_model // self.n_heads
        for block in self.blocks:
            block.kv = torch.zeros(2 * self.slots, 2 * self.n_kv * hs, device=w.device, dtype=w.dtype)
            block.kv_pair = block.kv.view(2, self.slots, 2 * self.n_kv * hs)
        dist = torch.arange(self.window - 1, -1, -1, device=w.device).to(w.dtype)  # (W,): W-1 .. 0
        g = self.n_heads // self.n_kv
        self.alibi = (-self.slopes.to(w.dtype).view(-1, 1) * dist).view(self.n_kv, g, self.window)
        self.origin = -1

    @torch.jit.export
    def set_condition(self, z: Tensor) -> None:
        """Condition the incremental paths on z (cond_dim,) or (1, cond_dim)."""
        if self.cond_dim == 0:
            raise RuntimeError("this model has no conditioning input (cond_dim is 0)")
        w = self.wte.weight
        self.cond_emb = self.cond_proj(z.to(w.device, w.dtype).view(1, self.cond_dim)).detach()

    @torch.jit.export
    def rollback(self, pos: int) -> None:
        """Forget the tokens at positions >= pos (up to max_rollback back; the caller checks).

        Nothing to do here: the window of the next token, at pos, is (pos - window, pos], and the
        slots of later positions are rewritten before any window reaches them again.
        """
        pass

    @torch.jit.export
    def prefill(self, tokens: Tensor, pos: int) -> Tensor:
        """tokens (1, T), T <= max_rollback, at positions pos.. -> logits (V,) after the last."""
        T = tokens.size(1)
        if T < 1 or T > self.max_rollback:
            raise RuntimeError("prefill takes 1..max_rollback tokens at a time")
        if self.alibi.numel() == 0:
            self.reset()
        if self.origin < 0:
            self.origin = pos
        q_pos = torch.arange(pos, pos + T, device=tokens.device)  # (T,)
        slots = q_pos % self.slots
        slots = torch.cat([slots, slots + self.slots])  # (2T,): every token at s and s + S
        lo = max(self.origin, pos - self.window + 1)  # the first position the chunk's first token sees
        n = pos + T - lo  # keys lo .. pos+T-1, contiguous from slot lo % S (n <= S - 1)
        k_pos = torch.arange(lo, pos + T, device=tokens.device)  # (n,)
        x = self.wte.weight.index_select(0, tokens.view(T))  # (T, C)
        if self.cond_dim > 0:
            x = x + self.cond_emb
        bias = window_bias(self.slopes.to(x.dtype), q_pos, k_pos, self.window)  # (nh, T, n)
        bias = bias.view(self.n_kv, (self.n_heads // self.n_kv) * T, n)  # (n_kv, group T, n)
        for block in self.blocks:
            x = block.prefill(x, bias, slots, lo % self.slots, n)
        x = x[T - 1 :]  # (1, C): the head only on the last position
        x = F.layer_norm(x, (self.d_model,), self.ln_f.weight, self.ln_f.bias)
        return F.linear(x, self.wte.weight).view(self.vocab_size)  # (V,)

    @torch.jit.export
    def decode(self, token: int, pos: int) -> Tensor:
        """One token at position pos -> logits (V,) of the next. Same shapes for every token once the window is full."""
        if self.origin < 0:
            self.origin = pos
        n = min(pos + 1 - self.origin, self.window)
        start = (pos - n + 1) % self.slots  # the window (pos - n, pos] is slots [start, start + n)
        bias = self.alibi[:, :, self.window - n :]  # (n_kv, group, n)
        x = self.wte.weight[token : token + 1]  # (1, C)
        if self.cond_dim > 0:
            x = x + self.cond_emb
        slot = pos % self.slots
        for block in self.blocks:
            x = block.decode(x, bias, slot, start, n)
        x = F.layer_norm(x, (self.d_model,), self.ln_f.weight, self.ln_f.bias)
        return F.linear(x, self.wte.weight).view(self.vocab_size)  # (V,)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
