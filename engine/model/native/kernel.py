"""The native decode step (engine/model/native/decode.c) bound to a loaded model's own tensors, via ctypes.

    decoder = NativeDecoder(module, threads=2)   # module: the TorchScript model, on the CPU, float32
    logits = decoder.step(token, pos, origin)    # == module.decode(token, pos), ~5x faster on a 2-core VM
    logits = decoder.feed(tokens, pos, origin)   # == module.prefill(tokens, pos) for up to feed_max tokens
    decoder.bind(module)                         # after module.reset() / set_condition(): buffers moved

The kernel reads the module's weights and reads and writes its KV ring buffers in place (pointers, no
copy), so the TorchScript paths (prefill, rollback, reset) and the native decode step share one cache
and can be mixed freely. With threads > 1 the decoder starts threads - 1 helper threads of its own
(no OpenMP pool): a step never waits for a helper that the OS has descheduled, it finishes the
helper's share itself. The module must outlive the decoder, and nothing may reallocate its buffers
without a `bind` (ModelSession does both); this class keeps the bound tensors alive until the next
bind or close, after the helpers have let go of them.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import torch

from engine.errors import ModelError

log = logging.getLogger(__name__)

LIBRARY = Path(__file__).resolve().parent / "libsideman_decode.so"
ABI_VERSION = 4
LAYER_TENSORS = ("ln1.weight", "ln1.bias", "attn_w", "attn_b", "proj_w", "ln2.weight", "ln2.bias",
                 "fc_w", "fc_b", "fc2_w", "kv")  # the order of decode.c's L_* enum

def attribute(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The module's parameter or buffer `name` ("blocks.0.ln1.weight"), by attribute lookups."""
    for part in name.split("."):
        module = getattr(module, part)
    return module


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


class NativeKernelUnavailable(ModelError):
    """The native decode kernel is not built, or cannot run this model; the TorchScript path can."""


def load_library(path: Path = LIBRARY) -> ctypes.CDLL:
    """The kernel library, loaded once; NativeKernelUnavailable says how to build it when it is missing.

    The library needs no OpenMP runtime: its helper threads are its own (see decode.c)."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        if not path.exists():
            raise NativeKernelUnavailable(
                f"{path.name} is not built: run `python -m engine.model.native.build` (make setup does; it needs a C "
                "compiler, apt-get install gcc)")
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise NativeKernelUnavailable(f"{path} cannot be loaded ({exc}); rebuild it on this machine with "
                                          "`python -m engine.model.native.build --force`") from None
        lib.sideman_abi_version.restype = ctypes.c_int
        if lib.sideman_abi_version() != ABI_VERSION:
            raise NativeKernelUnavailable(f"{path} is from another version of sideman; rebuild it with "
                                          "`python -m engine.model.native.build --force`")
        lib.sideman_decoder_new.restype = ctypes.c_void_p
        lib.sideman_decoder_new.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
        lib.sideman_decoder_bind.restype = None
        lib.sideman_decoder_bind.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.sideman_decoder_step.restype = None
        lib.sideman_decoder_step.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                             ctypes.c_void_p]
        lib.sideman_decoder_feed.restype = ctypes.c_int
        lib.sideman_decoder_feed.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_int,
                                             ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.sideman_decoder_feed_max.restype = ctypes.c_int
        lib.sideman_decoder_matvec.restype = ctypes.c_int
        lib.sideman_decoder_matvec.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                               ctypes.c_void_p, ctypes.c_void_p]
        lib.sideman_decoder_debug_stall.restype = None
        lib.sideman_decoder_debug_stall.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        lib.sideman_decoder_free.restype = None
        lib.sideman_decoder_free.argtypes = [ctypes.c_void_p]
        _lib = lib
        return lib


def available() -> bool:
    try:
        load_library()
    except NativeKernelUnavailable:
        return False
    return True


class NativeDecoder:
    """One model's decode step in C, over the model's own tensors. One caller thread at a time; close()
    stops the helper threads."""

    def __init__(self, module: torch.nn.Module, threads: int = 1) -> None:
        self._lib = load_library()
        self._handle: int | None = None
        params = dict(module.named_parameters())
        n_layers = sum(1 for name in params if name.startswith("blocks.") and name.endswith(".attn_w"))
        fc_w = params.get("blocks.0.fc_w")
        if n_layers == 0 or fc_w is None:
            raise NativeKernelUnavailable("the model is not a sideman TransformerLM (no blocks.N.attn_w / fc_w)")
        self.vocab_size = int(module.vocab_size)
        self.n_layers = n_layers
        cfg = [self.vocab_size, int(module.d_model), n_layers, int(module.n_heads), int(module.n_kv),
               int(fc_w.shape[1]), int(module.window), int(module.slots)]
        self.threads = max(1, int(threads))
        handle = self._lib.sideman_decoder_new((ctypes.c_int64 * len(cfg))(*cfg), self.threads)
        if not handle:
            raise NativeKernelUnavailable(f"the native kernel cannot run this model's shapes {cfg} "
                                          "(or ran out of memory)")
        self._handle = handle
        self.feed_max = int(self._lib.sideman_decoder_feed_max())
        self._tensors: list[torch.Tensor] = []
        # the tensors the kernel reads, by name, looked up one by one (walking every parameter and buffer of a
        # scripted module took 0.8 ms a bind, and a session binds at each reset and condition): the weights
        # once, the buffers that reset() and set_condition() replace at each bind
        names = ["wte.weight", "ln_f.weight", "ln_f.bias", "alibi"] + (["cond_emb"] if int(module.cond_dim) > 0 else [])
        names += [f"blocks.{i}.{n}" for i in range(n_layers) for n in LAYER_TENSORS]
        self._module = module
        self._weights = {name: params[name] for name in names if name in params}
        self._buffers = [name for name in names if name not in params]
        self.bind(module)

    def bind(self, module: torch.nn.Module) -> None:
        """Point the kernel at the module's tensors (again: after reset() or set_condition() replaced buffers)."""
        if module is not self._module:
            raise ValueError("a NativeDecoder binds the module it was made for")
        named = {**self._weights, **{name: attribute(module, name) for name in self._buffers}}
        if named["alibi"].numel() == 0:
            raise NativeKernelUnavailable("the model's cache is not allocated: call module.reset() before binding")
        glob = [named["wte.weight"], named["ln_f.weight"], named["ln_f.bias"], named["alibi"],
                named["cond_emb"] if int(module.cond_dim) > 0 else None]
        layers = [named[f"blocks.{i}.{n}"] for i in range(self.n_layers) for n in LAYER_TENSORS]
        tensors = [t for t in glob + layers if t is not None]
        for t in tensors:
            if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
                raise NativeKernelUnavailable(f"the native kernel runs float32 contiguous CPU tensors; this model "
                                              f"has {t.dtype} on {t.device}: use the TorchScript path")
        ptrs = [0 if t is None else t.data_ptr() for t in glob + layers]
        self._lib.sideman_decoder_bind(self._handle, (ctypes.c_void_p * len(ptrs))(*ptrs))
        self._tensors = tensors  # keep them alive while the kernel points at them

    def step(self, token: int, pos: int, origin: int = 0) -> torch.Tensor:
        """One token at absolute position pos -> logits (V,) of the next, a new tensor; the window
        starts no earlier than `origin` (the first position written since reset)."""
        out = torch.empty(self.vocab_size)
        self._lib.sideman_decoder_step(self._handle, token, pos, origin, out.data_ptr())
        return out

    def feed(self, tokens: list[int], pos: int, origin: int = 0) -> torch.Tensor:
        """Tokens at absolute positions pos.. (1 .. feed_max of them) -> logits (V,) after the last, their
        keys and values in the cache: module.prefill's result for a few tokens without the interpreter
        (on the calling thread; each weight read once per 4 tokens)."""
        n = len(tokens)
        if not 1 <= n <= self.feed_max:
            raise ValueError(f"feed takes 1..{self.feed_max} tokens, not {n}")
        out = torch.empty(self.vocab_size)
        toks = (ctypes.c_int64 * n)(*tokens)
        if self._lib.sideman_decoder_feed(self._handle, toks, n, pos, origin, out.data_ptr()) != 0:
            raise ValueError(f"feed of {n} tokens refused by the kernel")
        return out

    def matvec(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x (in,) @ w (in, out) by the kernel's own threads and mat-vec routine: the benchmark's floor."""
        if w.dtype != torch.float32 or x.dtype != torch.float32 or not (w.is_contiguous() and x.is_contiguous()):
            raise ValueError("matvec takes contiguous float32 tensors")
        if w.dim() != 2 or x.shape != (w.shape[0],):
            raise ValueError(f"matvec: x {tuple(x.shape)} does not match w {tuple(w.shape)}")
        y = torch.empty(w.shape[1])
        if self._lib.sideman_decoder_matvec(self._handle, w.data_ptr(), w.shape[0], w.shape[1], x.data_ptr(),
                                            y.data_ptr()) != 0:
            raise ValueError(f"matvec: {w.shape[1]} columns is wider than this decoder's scratch")
        return y

    def debug_stall(self, thread: int, phase: int, seconds: float) -> None:
        """Tests: from now on `thread` (0 = the caller, 1.. = helpers) sleeps `seconds` in every step before
        publishing its share of `phase` (0 .. 5 * layers - 1: each layer's q|k|v, attention, projection,
        fc, fc2; 5 * layers: the head), as if the OS had descheduled it there; seconds = 0 stops it."""
        self._lib.sideman_decoder_debug_stall(self._handle, int(thread), int(phase), int(seconds * 1e9))

    def close(self) -> None:
        if self._handle:
            self._lib.sideman_decoder_free(self._handle)
            self._handle = None
        self._tensors = []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass
