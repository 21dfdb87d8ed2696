"""The restyle model: a conditional VAE whose decoder is the KV-cached transformer.

    encoder   a phrase's RESTYLE stream (as played or as written) -> q(z_b | phrase) = N(mu_b, sigma_b^2), one
              z_b in R^Z per bar b (latent = "bar"; bidirectional attention over the whole phrase, pooled per bar),
              or one for the whole phrase (latent = "phrase", the first design)
    decoder   `TransformerLM` with a condition vector [z_b, anchor, style] at each position (the anchor: where
              the phrase is, its pitch classes, mean pitch and range, for models trained with it), b the bar the position is
              in: style is a point of the style simplex (a one-hot of the target style, or a mix of the phrase's
              own and the target's: the amount)
    critic    a separate small encoder: the phrase -> logits over the styles. Trained on real phrases only;
              at inference it estimates a played phrase's own style (the amount's starting point) and can
              choose among sampled candidates the one most in the target style

`RestyleLM` is a `TransformerLM` (its weights keep their names, so the runtime's session and the native
decode kernel drive its decoder as they drive any model) with two more TorchScript methods:

    encode(tokens (1, T)) -> (N, Z)        the posterior means, one per bar (N bars; N = 1 for latent "phrase")
    anchor(tokens (1, T)) -> (A,)          where the phrase is (pitch classes, mean pitch, range; A = 0 without)
    critic_logits(tokens (1, T)) -> (S,)    the critic's logits

Training-only parts (the latent adversary) live in `engine.train.train_restyle`, not here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from engine.music.vocab import DEFAULT_VOCAB
from engine.train.model import ModelConfig, TransformerLM

LATENTS = ("bar", "phrase")
ANCHOR_DIM = 14  # the anchor: 12 pitch classes, mean pitch, range


@dataclass(frozen=True)
class RestyleConfig:
    z_dim: int = 64
    n_styles: int = 5
    enc_d: int = 256
    enc_layers: int = 3
    enc_heads: int = 4
    critic_d: int = 128
    critic_layers: int = 2
    max_len: int = 256  # tokens of a phrase the encoders read (the longest 4-bar phrases fit)
    dropout: float = 0.1
    latent: str = "bar"  # "bar": one z per bar; "phrase": one z for the phrase (the first design)
    # where the phrase is, handed to the decoder beside z (not through it): its note-ons' pitch-class profile
    # (12), mean pitch and range (2); 0: none (every model before 2026-12-07). With it z need not carry the
    # register and key that the styles differ in (the style MMD run lost them: docs/benchmarks.md)
    anchor: bool = False

    def __post_init__(self) -> None:
        if self.latent not in LATENTS:
            raise ValueError(f"latent {self.latent!r}: choose one of {', '.join(LATENTS)}")

    @property
    def anchor_dim(self) -> int:
        return ANCHOR_DIM if self.anchor else 0

    @property
    def cond_dim(self) -> int:
        return self.z_dim + self.anchor_dim + self.n_styles

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderBlock(nn.Module):
    """Pre-LN bidirectional self-attention block; padded keys masked out."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.dropout = dropout

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        """x (B, T, d); key_bias (B, 1, 1, T): 0 for real tokens, -inf for padding."""
        B, T, d = x.shape
        hs = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)  # (B, T, d) each
        q = q.view(B, T, self.heads, hs).transpose(1, 2)  # (B, h, T, hs)
        k = k.view(B, T, self.heads, hs).transpose(1, 2)
        v = v.view(B, T, self.heads, hs).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, dropout_p=p)  # (B, h, T, hs)
        x = x + F.dropout(self.proj(y.transpose(1, 2).reshape(B, T, d)), p, self.training)
        h = F.gelu(self.fc(self.ln2(x)))  # (B, T, 4d)
        return x + F.dropout(self.fc2(h), p, self.training)


class PhraseEncoder(nn.Module):
    """tokens (B, T) with pad id `pad` -> mean-pooled features (B, d) -> a linear head (B, out)."""

    def __init__(self, vocab_size: int, d: int, layers: int, heads: int, max_len: int, out: int, pad: int,
                 dropout: float) -> None:
        super().__init__()
        self.pad = pad
        self.max_len = max_len
        self.emb = nn.Embedding(vocab_size, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList([EncoderBlock(d, heads, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, out)

    def features(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B, T) -> normalised features (B, T', d) and the real-token mask (B, T'), T' <= max_len."""
        B, T = tokens.shape
        tokens = tokens[:, : self.max_len]
        T = tokens.size(1)
        real = tokens != self.pad  # (B, T)
        pos = torch.arange(T, device=tokens.device)
        x = self.emb(tokens) + self.pos(pos).unsqueeze(0)  # (B, T, d)
        zeros = torch.zeros(B, 1, 1, T, device=tokens.device, dtype=x.dtype)
        key_bias = zeros.masked_fill(~real.view(B, 1, 1, T), float("-inf"))  # (B, 1, 1, T)
        for block in self.blocks:
            x = block(x, key_bias)
        return self.ln(x), real

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> the head of the mean over the phrase's tokens (B, out)."""
        x, real = self.features(tokens)
        w = real.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        pooled = (x * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, d)
        return self.head(pooled)  # (B, out)

    def forward_groups(self, tokens: Tensor, groups: Tensor, n: int) -> Tensor:
        """tokens (B, T), groups (B, T) in 0..n-1 -> the head of the mean over each group's tokens (B, n, out)."""
        x, real = self.features(tokens)
        T = x.size(1)
        w = F.one_hot(groups[:, :T], n).to(x.dtype) * real.to(x.dtype).unsqueeze(-1)  # (B, T, n)
        pooled = torch.einsum("btn,btd->bnd", w, x) / w.sum(1).clamp_min(1.0).unsqueeze(-1)  # (B, n, d)
        return self.head(pooled)  # (B, n, out)


def bar_ids(tokens: Tensor, bar: int, eos: int, pad: int) -> Tensor:
    """tokens (B, T) -> the bar each position is in (B, T), from 0: a BAR token opens the next bar, unless
    it closes the phrase (followed by EOS, padding or nothing); the header before the first BAR is in bar 0."""
    nxt = torch.cat([tokens[:, 1:], torch.full_like(tokens[:, :1], pad)], dim=1)  # (B, T)
    opens = (tokens == bar) & (nxt != eos) & (nxt != pad)
    return (opens.long().cumsum(1) - 1).clamp_min(0)  # (B, T)


class RestyleLM(TransformerLM):
    """The decoder (a TransformerLM conditioned on [z, style]) with the phrase encoder and the style critic."""

    __jit_ignored_attributes__ = ["config", "restyle"]

    def __init__(self, cfg: ModelConfig, rcfg: RestyleConfig, pad: int, bar: int = DEFAULT_VOCAB.bar,
                 eos: int = DEFAULT_VOCAB.eos) -> None:
        if cfg.cond_dim != rcfg.cond_dim:
            raise ValueError(f"the decoder's cond_dim {cfg.cond_dim} must be z_dim + n_styles = {rcfg.cond_dim}")
        super().__init__(cfg)
        self.restyle = rcfg
        self.z_dim = rcfg.z_dim
        self.n_styles = rcfg.n_styles
        self.per_bar = rcfg.latent == "bar"
        self.anchor_dim = rcfg.anchor_dim
        self.pad, self.bar, self.eos = pad, bar, eos
        self.note_on_base = DEFAULT_VOCAB.note_on_base
        self.n_pitches = DEFAULT_VOCAB.config.n_pitches
        self.encoder = PhraseEncoder(cfg.vocab_size, rcfg.enc_d, rcfg.enc_layers, rcfg.enc_heads, rcfg.max_len,
                                     2 * rcfg.z_dim, pad, rcfg.dropout)
        self.critic = PhraseEncoder(cfg.vocab_size, rcfg.critic_d, rcfg.critic_layers, 4, rcfg.max_len,
                                    rcfg.n_styles, pad, rcfg.dropout)
        for name, p in list(self.encoder.named_parameters()) + list(self.critic.named_parameters()):
            if p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=0.02)

    def posterior(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tokens (B, T) -> mu (B, N, Z), logvar (B, N, Z), and which of the N bars each phrase has (B, N) bool
        (N = the most bars in the batch; 1 for latent "phrase")."""
        tokens = tokens[:, : self.encoder.max_len]
        if self.per_bar:
            ids = bar_ids(tokens, self.bar, self.eos, self.pad)  # (B, T)
            n = int(ids.max().item()) + 1
            stats = self.encoder.forward_groups(tokens, ids, n)  # (B, N, 2Z)
            has = torch.arange(n, device=tokens.device) <= ids.amax(1, keepdim=True)  # (B, N): bars run 0..last
        else:
            stats = self.encoder(tokens).unsqueeze(1)  # (B, 1, 2Z)
            has = torch.ones(tokens.size(0), 1, dtype=torch.bool, device=tokens.device)
        mu, logvar = stats[..., : self.z_dim], stats[..., self.z_dim :]
        return mu, logvar.clamp(-8.0, 4.0), has

    def bar_condition(self, z: Tensor, style: Tensor, tokens: Tensor, bars: Tensor) -> Tensor:
        """`bar_condition` with this model's BAR, EOS and PAD."""
        return bar_condition(z, style, tokens, bars, self.bar, self.eos, self.pad)

    def phrase_anchor(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> where each phrase is (B, A): its note-ons' pitch-class shares (12), mean pitch
        ((p - 60) / 12) and range (/ 12); (B, 0) for a model without the anchor."""
        B = tokens.size(0)
        if self.anchor_dim == 0:
            return torch.zeros(B, 0, device=tokens.device)
        rel = tokens - self.note_on_base
        ons = ((rel >= 0) & (rel < self.n_pitches)).float()  # (B, T)
        pitch = rel.clamp(0, self.n_pitches - 1)  # (B, T)
        count = ons.sum(1).clamp_min(1.0)  # (B,)
        classes = F.one_hot(pitch % 12, 12).float() * ons.unsqueeze(-1)  # (B, T, 12)
        profile = classes.sum(1) / count.unsqueeze(-1)  # (B, 12)
        p = pitch.float()
        mean = (p * ons).sum(1) / count  # (B,)
        high = torch.where(ons > 0, p, torch.full_like(p, -1.0)).amax(1)
        low = torch.where(ons > 0, p, torch.full_like(p, 1000.0)).amin(1)
        has = ons.sum(1) > 0
        mean = torch.where(has, (mean - 60.0) / 12.0, torch.zeros_like(mean))
        span = torch.where(has, (high - low) / 12.0, torch.zeros_like(mean))
        return torch.cat([profile, mean.unsqueeze(-1), span.unsqueeze(-1)], dim=-1)  # (B, 14)

    def decoder_latents(self, z: Tensor, tokens: Tensor) -> Tensor:
        """z (B, N, Z) and the phrase the encoder read (B, T) -> what the decoder reads a bar (B, N, Z + A):
        z beside the phrase's anchor."""
        if self.anchor_dim == 0:
            return z
        a = self.phrase_anchor(tokens[:, : self.encoder.max_len])  # (B, A)
        return torch.cat([z, a.unsqueeze(1).expand(-1, z.size(1), -1)], dim=-1)

    @torch.jit.export
    def anchor(self, tokens: Tensor) -> Tensor:
        """tokens (1, T) -> the phrase's anchor (A,) (empty for a model without one)."""
        return self.phrase_anchor(tokens[:, : self.encoder.max_len])[0]

    @torch.jit.export
    def encode(self, tokens: Tensor) -> Tensor:
        """tokens (1, T) -> the posterior means (N, Z), one per bar (N = 1 for latent "phrase")."""
        mu, _, _ = self.posterior(tokens)
        return mu[0]

    @torch.jit.export
    def critic_logits(self, tokens: Tensor) -> Tensor:
        """tokens (1, T) -> the critic's style logits (S,)."""
        return self.critic(tokens)[0]


def bar_condition(z: Tensor, style: Tensor, tokens: Tensor, bars: Tensor, bar: int, eos: int, pad: int) -> Tensor:
    """The decoder's condition at each position of `tokens` (B, T): [z of its bar, style] (B, T, Z + S).
    z (B, N, Z) (N = 1: one z for the phrase); style (B, S); bars (B,) long, each phrase's latents (a position
    past them takes the last)."""
    ids = torch.minimum(bar_ids(tokens, bar, eos, pad), (bars - 1).clamp_min(0).view(-1, 1))  # (B, T)
    zt = z.gather(1, ids.unsqueeze(-1).expand(-1, -1, z.size(-1)))  # (B, T, Z)
    return torch.cat([zt, style.unsqueeze(1).expand(-1, tokens.size(1), -1)], dim=-1)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q || N(0, 1)) per latent dimension, averaged over the rows (phrases, or bars): mu, logvar (M, Z) -> (Z,)."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0)


def free_bits_kl(mu: Tensor, logvar: Tensor, floor: float) -> Tensor:
    """The KL with free bits: each dimension's batch-mean KL counts only above `floor` nats (no gradient
    pushes a dimension below it, so the decoder cannot make z useless: no posterior collapse)."""
    return torch.clamp(kl_per_dim(mu, logvar), min=floor).sum()


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times -scale backward (the latent adversary's trick)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return -ctx.scale * grad, None


def reverse_gradient(x: Tensor, scale: float) -> Tensor:
    return GradientReversal.apply(x, scale)


__all__ = ["LATENTS", "EncoderBlock", "PhraseEncoder", "RestyleConfig", "RestyleLM", "bar_condition", "bar_ids", "free_bits_kl",
           "kl_per_dim", "reverse_gradient"]
