"""How many voices a phrase has, as a listener counts them: the most notes it holds together for at
least a sixteenth note. A legato overlap shorter than that (a player striking the next key before
lifting the last one) is one voice passing on, not two voices; a chord, rolled or struck, counts whole.

`PhraseTexture` follows a phrase note event by note event (the stream's ticks never go back), so the
live daemon and the offline tools count a phrase the same way from the same tokens.
"""

from __future__ import annotations

from engine.music.vocab import TICKS_PER_BEAT

HELD_TICKS = TICKS_PER_BEAT // 4  # a sixteenth note: shorter overlaps are legato


class PhraseTexture:
    """The most notes held together for at least `held_ticks`, since the last `restart`."""

    def __init__(self, held_ticks: int = HELD_TICKS) -> None:
        self.held_ticks = held_ticks
        self.sounding = 0  # notes sounding now
        self.since = 0  # tick the sounding count took its present value
        self._peak = 0  # the most notes held together long enough, up to `since`

    def event(self, tick: int, on: bool) -> None:
        """A note-on or note-off of the phrase at `tick`."""
        if tick - self.since >= self.held_ticks:
            self._peak = max(self._peak, self.sounding)
        self.sounding = self.sounding + 1 if on else max(0, self.sounding - 1)
        self.since = tick

    def peak(self, tick: int) -> int:
        """The phrase's voices as of `tick` (0 before any note was held a sixteenth)."""
        if tick - self.since >= self.held_ticks:
            return max(self._peak, self.sounding)
        return self._peak

    def restart(self, tick: int) -> None:
        """A new phrase begins at `tick` (the notes still sounding carry on into it)."""
        self._peak = 0
        self.since = tick

    def copy(self) -> "PhraseTexture":
        out = PhraseTexture(self.held_ticks)
        out.sounding, out.since, out._peak = self.sounding, self.since, self._peak
        return out
