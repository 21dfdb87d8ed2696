"""Offline call and response: a prompt (a MIDI file or tokens) in, the sideman's answer out.

The stream is laid out exactly as the models were trained (engine.corpus.piece, call_response):
the player's phrase as role 0, then at the next bar line BAR and TURN, then the sideman's phrase as
role 1, sampled token by token under the grammar and the musical constraints until it has lasted
`bars` bars. Works with anything that has `feed(tokens) -> logits`, `append(token) -> logits` and
`logits` (a `ModelSession`, or the Markov baseline in evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from engine.errors import SidemanError
from engine.model.grammar import GrammarState
from engine.model.sampler import Constraints, Sampler, SamplingConfig, allowed_mask, follow_note_length, follow_texture
from engine.music.tokens import DecodedEvent, Meter, StreamDecoder, StreamEncoder, encode_midi, events_to_midi, read_midi
from engine.music.vocab import DEFAULT_VOCAB, PLAYER, Vocab

SIDEMAN = 1
DEFAULT_STYLE = "none"


class TokenSource(Protocol):
    def feed(self, tokens) -> torch.Tensor | None: ...
    def append(self, token: int) -> torch.Tensor: ...
    @property
    def logits(self) -> torch.Tensor | None: ...


@dataclass(frozen=True)
class ContinueSettings:
    bars: int = 2
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.9, top_p=0.95))
    constraints: Constraints | None = None
    max_tokens_per_bar: int = 96  # a safety stop for a model that will not move time
    extra_voices: int | None = 1  # the answer at most this many voices thicker than the phrase (None: free)
    longest_note_bars: int | None = 1  # no note held longer than this or the phrase's longest (None: free)

    def __post_init__(self) -> None:
        if not 1 <= self.bars <= 64:
            raise SidemanError(f"--bars must be 1..64, not {self.bars}")
        if self.extra_voices is not None and not 0 <= self.extra_voices <= 16:
            raise SidemanError(f"--extra-voices must be 0..16 or any, not {self.extra_voices}")
        if self.longest_note_bars is not None and not 1 <= self.longest_note_bars <= 64:
            raise SidemanError(f"--longest-note-bars must be 1..64 or any, not {self.longest_note_bars}")


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    meter: Meter
    bpm: float
    end_tick: int  # where the player's phrase ends


@dataclass(frozen=True)
class Continuation:
    prompt: Prompt
    tokens: list[int]  # what was generated, from the BAR/TURN that opens the response
    events: list[DecodedEvent]  # the prompt's and the response's notes, every note closed
    start_tick: int
    end_tick: int


def prompt_from_midi(path: str | Path, vocab: Vocab = DEFAULT_VOCAB, style: str = DEFAULT_STYLE) -> Prompt:
    """The player's phrase from a MIDI file: every channel is the player's part."""
    import mido

    mid = read_midi(path)
    bpm, meter = 120.0, Meter()
    for msg in mido.merge_tracks(mid.tracks):
        if msg.type == "set_tempo":
            bpm = mido.tempo2bpm(msg.tempo)
            break
    for msg in mido.merge_tracks(mid.tracks):
        if msg.type == "time_signature":
            meter = Meter(msg.numerator, msg.denominator)
            break
    tokens, enc = encode_midi(mid, vocab, style=style, task="CONTINUE", eos=False)
    if not any(vocab.is_note_on(t) for t in tokens):
        raise SidemanError(f"{path}: no notes to continue; play or draw a phrase first")
    return Prompt(tokens, meter, bpm, enc.position)


def response_start(tokens: list[int], vocab: Vocab, meter: Meter) -> tuple[list[int], int]:
    """Tokens that carry the stream to the next bar line (or this one), then TURN, then the release of
    any note still held (the player lets go at the turn, as in the training data); and that tick."""
    enc = StreamEncoder(vocab, meter)
    for t in tokens:
        enc.observe(t)
    start = enc.position if enc.last_bar == enc.position else enc.next_bar
    while start < enc.position:  # the observed stream may have set no bar yet
        start += enc.bar_ticks
    return enc.advance_to(start) + enc.turn() + enc.finish(eos=False), start


def continue_prompt(source: TokenSource, prompt: Prompt, settings: ContinueSettings = ContinueSettings(),
                    vocab: Vocab = DEFAULT_VOCAB) -> Continuation:
    bridge, start = response_start(prompt.tokens, vocab, prompt.meter)
    bar_ticks = prompt.meter.bar_ticks(vocab.config.ticks_per_beat)
    end = start + settings.bars * bar_ticks
    state = GrammarState(vocab, prompt.meter)
    state.feed_all(prompt.tokens + bridge)
    constraints = follow_note_length(follow_texture(settings.constraints, state.player_voices, settings.extra_voices),
                                     state.player_longest_note(), bar_ticks, settings.longest_note_bars)
    logits = source.feed(prompt.tokens + bridge)
    sampler = Sampler(settings.sampling)
    generated = list(bridge)
    for _ in range(settings.bars * settings.max_tokens_per_bar):
        mask = allowed_mask(state, SIDEMAN, constraints)
        mask[vocab.turn] = False  # the answer ends by time, as the daemon's does: never by handing the turn
        mask[vocab.eos] = False  # back or ending the stream (a note sounding then would be held to the end)
        token = sampler.sample(logits, mask)
        generated.append(token)
        state.feed(token)
        if state.position >= end:
            break
        logits = source.append(token)
    return Continuation(prompt, generated, _events(prompt.tokens + generated, vocab, end), start, end)


def _events(tokens: list[int], vocab: Vocab, end: int) -> list[DecodedEvent]:
    """Decoded notes, cut at `end`: nothing starts at or after it, everything sounding ends there."""
    dec = StreamDecoder(vocab)
    out: list[DecodedEvent] = []
    for e in dec.feed_all(tokens):
        if e.tick < end:
            out.append(e)
        elif not e.on and (e.role, e.pitch) in _sounding(out):
            out.append(DecodedEvent(end, False, e.pitch, 0, e.role))
    for role, pitch in sorted(_sounding(out)):
        out.append(DecodedEvent(max(end, out[-1].tick if out else end), False, pitch, 0, role))
    return out


def _sounding(events: list[DecodedEvent]) -> set[tuple[int, int]]:
    on: set[tuple[int, int]] = set()
    for e in events:
        (on.add if e.on else on.discard)((e.role, e.pitch))
    return on


def write_midi(c: Continuation, path: str | Path, vocab: Vocab = DEFAULT_VOCAB) -> None:
    """A type-0 file: the player's phrase on channel 1, the sideman's answer on channel 2."""
    mid = events_to_midi(c.events, vocab, c.prompt.bpm, c.prompt.meter, end_tick=c.end_tick)
    mid.save(str(path))
