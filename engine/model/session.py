"""A model session: the KV cache as the conversation.

    session = ModelSession(load_model("models/continue.pt"))
    session.feed(prompt_tokens)             # incremental prefill, as the player's events arrive
    token = sampler.sample(session.logits)  # the next-token logits are always ready
    session.append(token)                   # one decode step
    session.rollback(pos)                   # discard uncommitted tokens (up to max_rollback back)

The model's cache is a ring of `window + max_rollback` slots (see engine/train/model.py), so the
context slides by itself: the cost per token is flat for hours, memory is bounded, and no re-prefill
ever happens. Not thread-safe: one owner (the generator thread) drives a session.

The decode step runs on the native kernel (engine/native: the same computation fused into one C call
over the module's own weights and cache, ~6x faster than the TorchScript step on a small CPU) when it
is built and the model runs float32 on the CPU; otherwise on the module's TorchScript `decode`. A feed of
up to 32 tokens (a played note, an answer's prefix) runs on the kernel too (one call, batched); longer
feeds, rollback and reset use the TorchScript module. Both paths share its cache.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from collections import deque
from typing import Iterable, Sequence

import torch

from engine.errors import ModelError
from engine.model.modelfile import LoadedModel
from engine.model.native.kernel import NativeDecoder, NativeKernelUnavailable

log = logging.getLogger(__name__)

WARMUP_TOKENS = 64
KERNELS = ("auto", "native", "torchscript")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else the CPU; asking for CUDA without it is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu (or auto), "
                         "or install a CUDA build of torch")
    return dev


class ModelSession:
    """Incremental inference over one model: feed, step, append, rollback; the context slides."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "auto", half: bool | None = None,
                 threads: int | None = None, warmup: bool = True, kernel: str = "auto") -> None:
        self._loaded, self._kernel_choice = loaded, kernel
        self._twin: ModelSession | None = None
        cfg = loaded.card["model"]
        self.card = loaded.card
        self.name = loaded.name
        self.path = loaded.path  # the model file (a restyle file also holds its n-gram critic)
        self.vocab_size = int(cfg["vocab_size"])
        self.window = int(cfg["window"])
        self.max_rollback = int(cfg["max_rollback"])
        self.cond_dim = int(cfg.get("cond_dim", 0))
        self.device = resolve_device(device)
        self.half = (self.device.type == "cuda") if half is None else half
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        module = loaded.module.to(self.device)
        if self.half:
            module = module.half()
        for p in module.parameters():
            p.requires_grad_(False)
        # Not frozen: torch.jit.freeze / optimize_for_inference (torch 2.13) gave decode logits off by
        # up to 0.25 from the unfrozen module (prefill was right); the model's own (in, out) weight
        # layout already gets what freezing's linear pre-transposition would.
        self.module = module
        self.threads = torch.get_num_threads()
        self._native = self._native_decoder(kernel)
        self._history: deque[int] = deque(maxlen=self.window + self.max_rollback)
        self._position = 0
        self._max_written = -1
        self._logits: torch.Tensor | None = None
        self._condition: torch.Tensor | None = None
        if warmup:
            self.warm_up()
        self.reset()

    def _native_decoder(self, kernel: str) -> NativeDecoder | None:
        """The native decode kernel for this model, or None for the TorchScript path (kernel 'auto' falls
        back with a warning; 'native' raises when the kernel cannot run the model)."""
        if kernel not in KERNELS:
            raise ModelError(f"unknown decode kernel {kernel!r}: use one of {', '.join(KERNELS)}")
        if kernel == "torchscript":
            return None
        try:
            if self.device.type != "cpu" or self.half:
                raise NativeKernelUnavailable(f"the native kernel runs float32 on the CPU, not "
                                              f"{'half' if self.half else 'float32'} on {self.device}")
            with torch.inference_mode():
                self.module.reset()
            decoder = NativeDecoder(self.module, threads=self.threads)
        except NativeKernelUnavailable as exc:
            if kernel == "native":
                raise
            if self.device.type == "cpu":
                log.warning("decoding %s on the TorchScript path (slower): %s", self.name, exc)
            return None
        log.debug("decoding %s on the native kernel, %d thread(s)", self.name, self.threads)
        return decoder

    def twin(self) -> "ModelSession":
        """A second session over an independent copy of the same model (its own cache and condition: the
        module holds both), on the same device, threads and kernel; warmed up. Made on the first call (about
        0.2 s on a CPU), the same twin after: its user must own it as it owns this session."""
        if self._twin is None:
            self._twin = self._make_twin()
        return self._twin

    def _make_twin(self) -> "ModelSession":
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(self._loaded.module, buffer)
            buffer.seek(0)
            module = torch.jit.load(buffer, map_location=self.device)
        module.eval()
        copy = LoadedModel(module, self._loaded.card, self._loaded.path)
        return ModelSession(copy, device=self.device, half=self.half, threads=self.threads, kernel=self._kernel_choice)

    @property
    def kernel(self) -> str:
        """Which decode path runs: 'native' or 'torchscript'."""
        return "native" if self._native is not None else "torchscript"

    def close(self) -> None:
        """Stop the native kernel's worker threads (if any); the session falls back to TorchScript decode."""
        if self._native is not None:
            self._native.close()
            self._native = None
        if self._twin is not None:
            self._twin.close()

    # ---- state ------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """The absolute position of the next token (the number of tokens fed since reset)."""
        return self._position

    @property
    def history(self) -> list[int]:
        """The tokens in the attention window (the last `window`), oldest first."""
        h = list(self._history)
        return h[-self.window:]

    @property
    def min_rollback_position(self) -> int:
        """The earliest position `rollback` can return to."""
        return max(0, self._max_written - self.max_rollback + 1)

    def tokens_since(self, pos: int) -> list[int]:
        """The tokens at positions pos .. position-1 (pos no earlier than min_rollback_position)."""
        n = self._position - pos
        if n < 0 or n > len(self._history):
            raise ModelError(f"position {pos} is not in the session's history "
                             f"({self._position - len(self._history)}..{self._position})")
        return list(self._history)[len(self._history) - n:] if n else []

    # ---- operations -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: an empty cache at position 0 (the condition, if any, is kept)."""
        with torch.inference_mode():
            self.module.reset()
            if self._condition is not None:
                self.module.set_condition(self._condition)
        # positions start at 0: the window's origin is fixed now, whichever path writes first
        self.module.origin = 0
        if self._native is not None:
            self._native.bind(self.module)  # reset() reallocated the cache
        self._history.clear()
        self._position = 0
        self._max_written = -1
        self._logits = None

    def set_condition(self, z: torch.Tensor | Sequence[float]) -> None:
        """Condition generation (style / latent) on a vector of the model's cond_dim; applies from now on."""
        if self.cond_dim == 0:
            raise ModelError(f"model {self.name} takes no condition vector (cond_dim 0); use a conditional model")
        z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
        if z.numel() != self.cond_dim:
            raise ModelError(f"condition has {z.numel()} values, model {self.name} expects {self.cond_dim}")
        self._condition = z.to(self.device)
        with torch.inference_mode():
            self.module.set_condition(self._condition)
        if self._native is not None:
            self._native.bind(self.module)  # the condition embedding is a new tensor

    def feed(self, tokens: Iterable[int]) -> torch.Tensor | None:
        """Prefill tokens (in chunks of at most max_rollback); returns the logits after the last."""
        toks = [int(t) for t in tokens]
        self._check_tokens(toks)
        if len(toks) == 1:
            return self.append(toks[0])
        # a few tokens (a played note, an answer's prefix): the native kernel, no interpreter
        native = self._native is not None and len(toks) <= self._native.feed_max
        chunk = min(self._native.feed_max, self.max_rollback) if native else self.max_rollback
        with torch.inference_mode():
            for i in range(0, len(toks), chunk):  # chunks the ring can hold beside the first one's window
                part = toks[i:i + chunk]
                if native:
                    logits = self._native.feed(part, self._position)
                else:
                    logits = self.module.prefill(torch.tensor([part], dtype=torch.long, device=self.device),
                                                 self._position)
                self._advance(part)
                self._logits = self._to_host(logits)
        return self._logits

    def append(self, token: int) -> torch.Tensor:
        """One decode step: `token` (sampled or played) at the current position; returns the next logits."""
        t = int(token)
        if not 0 <= t < self.vocab_size:
            raise ModelError(f"token {t} out of range 0..{self.vocab_size - 1}")
        if self._native is not None:
            logits = self._native.step(t, self._position)
        else:
            with torch.inference_mode():
                logits = self.module.decode(t, self._position)
        self._advance((t,))
        self._logits = self._to_host(logits)
        return self._logits

    def step(self) -> torch.Tensor | None:
        """The current next-token logits (float32, CPU); None before the first token."""
        return self.logits

    @property
    def logits(self) -> torch.Tensor | None:
        if self._logits is None and self._position > 0:  # after a rollback: recompute the last step
            last = self._history[-1]
            self._position -= 1
            self._history.pop()
            with torch.inference_mode():
                self.module.rollback(self._position)
            self.append(last)
        return self._logits

    def rollback(self, pos: int) -> None:
        """Discard the tokens at positions >= pos; the logits become those after position pos - 1."""
        if pos > self._position or pos < 0:
            raise ModelError(f"cannot roll back to position {pos}: the session is at {self._position}")
        if pos == self._position:
            return
        if pos < self.min_rollback_position:
            raise ModelError(
                f"cannot roll back to position {pos}: the cache keeps only the last {self.max_rollback} positions "
                f"(earliest possible {self.min_rollback_position}); commit tokens later, or reset() and feed again")
        if pos == 0:
            self.reset()
            return
        with torch.inference_mode():
            self.module.rollback(pos)
        for _ in range(self._position - pos):
            self._history.pop()
        self._position = pos
        self._logits = None  # computed on demand (one decode step of the token at pos - 1)

    def warm_up(self, tokens: int = WARMUP_TOKENS) -> float:
        """Run prefill and decode paths untimed so the first real token is not slow; returns seconds."""
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        toks = torch.randint(0, self.vocab_size, (tokens,), generator=gen).tolist()
        self.reset()
        for size in (min(self.max_rollback, tokens // 2), 1, 2):
            self.feed(toks[:size])
        for t in toks:
            self.append(t)
        self.rollback(max(self.min_rollback_position, self._position - 3))
        _ = self.logits
        self.reset()
        dt = time.perf_counter() - t0
        log.debug("warmed up %s on %s in %.2f s", self.name, self.device, dt)
        return dt

    # ---- internals ----------------------------------------------------------------------------
    def _check_tokens(self, toks: list[int]) -> None:
        bad = [t for t in toks if not 0 <= t < self.vocab_size]
        if bad:
            raise ModelError(f"tokens {bad[:5]} out of range 0..{self.vocab_size - 1}")

    def _advance(self, toks: Sequence[int]) -> None:
        self._history.extend(toks)
        self._position += len(toks)
        self._max_written = max(self._max_written, self._position - 1)

    def _to_host(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.device.type != "cpu" or logits.dtype != torch.float32:
            return logits.float().cpu()
        return logits
