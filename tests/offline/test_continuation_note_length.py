"""The answer's longest note (`ContinueSettings.longest_note_bars`), through the offline continuation path
with a token source that would hold every note for ever: one stage with a fake model. The shipped model
through `sideman continue` is in tests/test_shipped_model.py."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.offline.continuation import SIDEMAN, ContinueSettings, continue_prompt, prompt_from_midi
from engine.model.sampler import SamplingConfig
from engine.music.vocab import DEFAULT_VOCAB as V

REPO = Path(__file__).resolve().parents[2]


class HoldingSource:
    """Logits that take the sideman's role, strike D4 when nothing sounds and otherwise move time as far as
    they may."""

    def __init__(self) -> None:
        self.sounding = False

    def _logits(self) -> torch.Tensor:
        x = torch.full((V.size,), -10.0)  # nothing else, unless nothing above is allowed
        x[V.shift_base:V.shift_base + V.config.max_shift] = torch.linspace(1.0, 9.0, V.config.max_shift)
        x[V.role(SIDEMAN)] = 30.0  # allowed only until the answer has taken its role
        x[V.note_on(62)] = 0.0 if self.sounding else 20.0
        x[V.note_off(62)] = -5.0
        return x

    def feed(self, tokens):
        return self._logits()

    def append(self, token: int) -> torch.Tensor:
        if token == V.note_on(62):
            self.sounding = True
        elif token == V.note_off(62):
            self.sounding = False
        return self._logits()

    @property
    def logits(self):
        return self._logits()


def note_lengths(continuation) -> list[int]:
    began, out = {}, []
    for e in continuation.events:
        if e.role != SIDEMAN:
            continue
        if e.on:
            began[e.pitch] = e.tick
        elif e.pitch in began:
            out.append(e.tick - began.pop(e.pitch))
    return out


def test_an_answer_note_is_released_at_a_bar_or_the_phrases_longest_note_whichever_is_longer():
    prompt = prompt_from_midi(REPO / "examples" / "folk-d-major.mid")
    bar = prompt.meter.bar_ticks(V.config.ticks_per_beat)
    sampling = SamplingConfig(temperature=0)
    free = continue_prompt(HoldingSource(), prompt, ContinueSettings(4, sampling, longest_note_bars=None))
    assert max(note_lengths(free)) > 2 * bar  # the source holds its note through the answer
    for bars in (1, 2):
        held = note_lengths(continue_prompt(HoldingSource(), prompt, ContinueSettings(4, sampling,
                                                                                       longest_note_bars=bars)))
        assert len(held) >= 4 // bars and max(held) <= bars * bar, (bars, held)
        assert max(held) == bars * bar  # released exactly at the limit, then struck again
