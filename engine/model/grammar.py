"""The token grammar as masks: which tokens may come next in a generated stream.

`GrammarState` follows every token of the stream, fed or generated (it wraps the tokenizer's own
`StreamDecoder`, plus bar tracking); `grammar_mask(state, role)` is a pure function of it giving a
bool tensor over the vocabulary (True = allowed) for the next token the caller generates in `role`:

- never PAD, BOS, a TASK or a STYLE mid-stream, never the ROLE of another role;
- the generated role's events only: while the current role is another one, no note or velocity
  tokens; ROLE_<target> switches to it (time tokens are shared, and the encoder writes shifts and
  bar lines before the role token, so those stay allowed: the stream keeps the encoder's order);
- a note-off only for a note of that role that is sounding and began before this tick (the encoder
  never writes zero-length notes), a note-on only for a pitch that is not sounding (the encoder
  closes a note before striking it again), a velocity token only when it changes the velocity;
- time: a shift never passes the next bar line, and when the position stands on a bar line whose
  BAR is not written yet, BAR is the only token allowed (the encoder writes BAR exactly there).
  The bar length comes from the meter given to the state, the bar phase from the BAR tokens seen;
  until the first BAR, BAR is allowed anywhere and shifts are limited only by the vocabulary.

Some token is always allowed (a shift, or BAR), so a sampler can never get stuck.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import torch

from engine.music.texture import PhraseTexture
from engine.music.tokens import Meter, StreamDecoder
from engine.music.vocab import DEFAULT_VOCAB, PLAYER, Vocab


class GrammarState:
    """The stream's state as far as the grammar needs it. Feed it every token, in order."""

    def __init__(self, vocab: Vocab = DEFAULT_VOCAB, meter: Meter = Meter(), allow_eos: bool = True,
                 role_written: bool = True) -> None:
        self.vocab = vocab
        self.decoder = StreamDecoder(vocab)
        if not role_written:  # a fresh stream, as an encoder writes it: its first note comes after a ROLE token
            self.decoder.role = -1
        self.bar_ticks = meter.bar_ticks(vocab.config.ticks_per_beat)
        self.allow_eos = allow_eos
        self.last_bar: int | None = None  # tick of the last BAR seen
        self.next_bar: int | None = None  # tick of the next bar line (None until a BAR is seen)
        self.vel_bin: int | None = None  # the velocity bin last written (None: none yet)
        self.on_tick: dict[tuple[int, int], int] = {}  # (role, pitch) -> tick of its note-on
        # the player's (role 0) phrase's voices: its count restarts at the player's first note after a
        # TURN (the TURN before an answer keeps it; the next phrase starts it over)
        self.player_texture = PhraseTexture()
        self.player_longest = 0  # ticks: the longest note of the player's phrase so far (restarts with the texture)
        self._turned = False
        # the notes sounding at the last tick before this one where a note began (the previous onset, from
        # which voice leading is judged: engine.music.harmony.parallels), and each role's last note-on pitch
        self.onset_sounding: frozenset[tuple[int, int]] = frozenset()
        self.last_pitch: dict[int, int] = {}
        self._onset_here = False  # a note began at this tick

    # ---- what the decoder knows ---------------------------------------------------------------
    @property
    def position(self) -> int:
        return self.decoder.position

    @property
    def role(self) -> int:
        return self.decoder.role

    @property
    def sounding(self) -> set[tuple[int, int]]:
        return self.decoder.sounding

    def sounding_pitches(self, role: int) -> list[int]:
        return sorted(p for r, p in self.decoder.sounding if r == role)

    @property
    def player_voices(self) -> int:
        """The voices of the player's phrase so far (the most notes held together a sixteenth)."""
        return self.player_texture.peak(self.position)

    def player_longest_note(self) -> int:
        """Ticks: the longest note of the player's phrase so far, a note still held counted as held till now."""
        held = [self.position - tick for (role, _), tick in self.on_tick.items() if role == PLAYER]
        return max([self.player_longest] + held)

    @property
    def bar_pending(self) -> bool:
        """True when the position stands on a bar line whose BAR has not been written."""
        return self.next_bar is not None and self.position == self.next_bar and self.last_bar != self.position

    def shift_limit(self) -> int:
        """The longest shift allowed now (0 when BAR must come first)."""
        if self.bar_pending:
            return 0
        limit = self.vocab.config.max_shift
        if self.next_bar is not None:
            limit = min(limit, self.next_bar - self.position)
        return limit

    # ---- updates -----------------------------------------------------------------------------
    def set_meter(self, meter: Meter) -> None:
        """A new meter from the next BAR on."""
        self.bar_ticks = meter.bar_ticks(self.vocab.config.ticks_per_beat)
        if self.last_bar is not None:
            self.next_bar = self.last_bar + self.bar_ticks
            self._resync()

    def feed(self, token: int) -> list:
        """Follow one token; returns the note events it makes (the decoder's DecodedEvents)."""
        v = self.vocab
        t = int(token)
        role = self.decoder.role
        if self._onset_here and v.is_shift(t):
            self._leave_onset()
        events = self.decoder.feed(t)
        for e in events:
            if e.role == PLAYER:
                if self._turned and e.on:
                    self.player_texture.restart(e.tick)
                    self.player_longest = 0
                    self._turned = False
                self.player_texture.event(e.tick, e.on)
        if t == v.turn:
            self._turned = True
        elif t == v.bar:
            self.last_bar = self.position
            self.next_bar = self.position + self.bar_ticks
        elif v.is_shift(t):
            self._resync()
        elif v.is_note_on(t):
            self.on_tick[(role, v.pitch_of(t))] = self.position
            self.last_pitch[role] = v.pitch_of(t)
            self._onset_here = True
        elif v.is_note_off(t):
            began = self.on_tick.pop((role, v.pitch_of(t)), None)
            if role == PLAYER and began is not None:
                self.player_longest = max(self.player_longest, self.position - began)
        elif v.is_velocity(t):
            self.vel_bin = t - v.vel_base
        return events

    def skip(self, ticks: int) -> None:
        """The stream's position moved on by `ticks` (whole bars) with no tokens written: an encoder
        shortened a long silence (StreamEncoder.skip_silence). The bar phase is kept."""
        if ticks:
            if self._onset_here:
                self._leave_onset()
            self.decoder.position += ticks
            if self.next_bar is not None:
                self.next_bar += ticks
            self._resync()

    def feed_all(self, tokens) -> None:
        for t in tokens:
            self.feed(t)

    def copy(self) -> "GrammarState":
        """An independent copy sharing the vocabulary (the per-revision path: no deepcopy)."""
        out = copy.copy(self)
        out.decoder = self.decoder.copy()
        out.on_tick = dict(self.on_tick)
        out.last_pitch = dict(self.last_pitch)
        out.player_texture = self.player_texture.copy()
        return out

    def _leave_onset(self) -> None:
        """The position moves on from a tick where a note began: what sounds now is the previous onset's."""
        self.onset_sounding = frozenset(self.decoder.sounding)
        self._onset_here = False

    def _resync(self) -> None:
        """A fed stream may pass bar lines without BAR tokens (e.g. a meter change): keep the phase."""
        if self.next_bar is not None:
            while self.next_bar < self.position:
                self.next_bar += self.bar_ticks


@lru_cache(maxsize=16)
def _static_masks(vocab: Vocab, role: int, allow_eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """(always allowed in the target role, always allowed in another role) before dynamic tokens."""
    base = np.zeros(vocab.size, dtype=bool)
    base[vocab.turn] = True
    if allow_eos:
        base[vocab.eos] = True
    other = base.copy()
    other[vocab.role(role)] = True
    return base, other


def grammar_mask(state: GrammarState, role: int) -> torch.Tensor:
    """Bool (V,): the tokens the grammar allows next when generating in `role`."""
    return torch.from_numpy(grammar_mask_np(state, role))


def grammar_mask_np(state: GrammarState, role: int) -> np.ndarray:
    """grammar_mask as a new numpy array (the sampler's per-token path: no torch op per token)."""
    v = state.vocab
    if state.bar_pending:
        mask = np.zeros(v.size, dtype=bool)
        mask[v.bar] = True
        return mask
    base, other = _static_masks(v, role, state.allow_eos)
    limit = state.shift_limit()
    mask = (other if state.role != role else base).copy()
    mask[v.shift_base:v.shift_base + limit] = True
    mask[v.bar] = state.next_bar is None  # the first BAR sets the bar phase
    if state.role != role:
        return mask
    mask[v.vel_base:v.vel_base + v.config.velocity_bins] = True
    if state.vel_bin is not None:
        mask[v.vel_base + state.vel_bin] = False
    mask[v.note_on_base:v.note_on_base + v.config.n_pitches] = True
    for pitch in state.sounding_pitches(role):
        mask[v.note_on(pitch)] = False
        if state.on_tick.get((role, pitch), -1) < state.position:
            mask[v.note_off(pitch)] = True
    return mask


def apply_mask(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with the disallowed tokens at -inf (a new tensor)."""
    return logits.masked_fill(~mask, float("-inf"))


def violations(tokens, vocab: Vocab = DEFAULT_VOCAB, role: int = 1, meter: Meter = Meter(),
               state: GrammarState | None = None) -> list[tuple[int, str]]:
    """(index, token name) of each generated token the grammar would not have allowed (for tests and eval)."""
    st = state.copy() if state is not None else GrammarState(vocab, meter)
    out = []
    for i, t in enumerate(tokens):
        if not bool(grammar_mask(st, role)[int(t)]):
            out.append((i, vocab.name(int(t))))
        st.feed(t)
    return out
