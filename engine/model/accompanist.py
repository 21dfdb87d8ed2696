"""Accompaniment: a plan of the sideman's voices a little ahead of the player, revised at each of the
player's events by exact rollback.

The stream is an ACCOMPANY stream (`engine.music.tokens.accompaniment_order`): at each tick the
sideman's events come before the player's, so the sideman's notes at a tick never depend on the player's
notes there. After the player's last event the accompanist holds a *plan*: the sideman's tokens sampled
ahead, with the player's role masked (the plan assumes the player adds nothing until their next event
arrives) or, with `predict_player`, with the player's next events predicted too (never played). A
prefix of the plan is *committed* (handed to the scheduler; never retracted or changed); the rest may
still change. A player event at tick q:

  1. cuts the plan at its first token past q (the sideman's events at q stay: they come first at q);
  2. rolls the session back to the cut exactly (KV rollback, no re-prefill), and the encoder and grammar
     state with it;
  3. feeds the player's event, then the committed sideman events past q, re-encoded in stream order;
  4. `step()` then regenerates the rest of the plan from there.

A prediction of the player's (`predict_player`) that the clock passes unplayed is taken out as soon as it
is stale (`expire_predictions`), re-feeding the committed events after it then, off the revision's path.

New sideman events are only ever planned at or after `floor` (the live mode sets it to the end of the
commit window; never at or before the player's last event's tick), so committed events never change; the
stream reaches the floor in one sampled shift (one long enough), never a run of short ones.
When the player stops (nothing held for `rest_after` ticks) the plan runs to the next bar line, closes the
sideman's notes there and rests; the player's next event starts it again.
While the player plays (a key held, or let go less than `rest_after` ago), voices silent for `enter_after`
ticks (each voice: `voice_enter_after`), and each voice that has held one note for `hold_limit`, must strike
on the next beat (the next eighth-note line where the floor has passed the beat; no shift passes that
line), and with the consonance guard a voice's new note keeps the melody's note with at
least one consonant voice; with the voice-leading rule it moves in no parallel fifth or octave with a voice
that moved at the tick and crosses no neighbour (engine.model.voice_leading).

A cut restores the encoder and grammar from the last checkpoint before it (every CHECKPOINT_EVERY sampled
tokens) and replays only the rest; tokens reach the session in one batched feed before the next sample
(`_sync`), and tokens a cut drops before the session saw them are never decoded.

The live mode (engine.live.modes.accompany) runs this on its model thread and `sideman accompany` runs it
offline: the same code, so the offline result is what the live mode plays with a commit window of zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from engine.model.grammar import GrammarState
from engine.model.sampler import Constraints, Sampler, allowed_mask_np
from engine.model.voice_leading import voice_leading_ons
from engine.music.harmony import CONSONANT, IMPERFECT
from engine.music.tokens import Meter, StreamEncoder, quantize
from engine.music.vocab import PLAYER, Vocab

log = logging.getLogger(__name__)

# a prediction of the player's is stale this long after its tick (see expire_predictions): a person plays
# 10-30 ms off the grid, so a prediction is not given up while the real note may still be on its way
EXPIRE_AFTER_MS = 40.0
VOICES = (1, 2, 3)  # the sideman's roles: alto, tenor, bass under a chorale tune
CHECKPOINT_EVERY = 8  # plan tokens between snapshots of the encoder and grammar (a cut replays fewer)
SILENCE_KEEP_BARS = 2  # a longer silence of the player's is shortened to this many empty bars
# the consonance repair leaves a melody note this long before a voice moves to it (see Accompanist): a passing
# note of an eighth or less may pass against the voices, as in the chorales; a longer one gets a consonant voice
REPAIR_AFTER_BEATS = 0.5


def expire_after_ticks(seconds_per_tick: float) -> float:
    """EXPIRE_AFTER_MS on the stream's grid at this tempo (at least one tick)."""
    return max(1.0, EXPIRE_AFTER_MS / 1000.0 / seconds_per_tick)


def _line_at_or_after(tick: int, origin: int, step: int) -> int:
    """The first tick at or after `tick` on the grid of `step` ticks from `origin`."""
    return origin + -(-(tick - origin) // step) * step


def voice_constraints(voices, ranges, key_pitch_classes=None) -> dict[int, Constraints]:
    """Each voice (role r) one note at a time within ranges[r - 1], in the key when one is given."""
    return {r: Constraints(key_pitch_classes, *ranges[r - 1], max_polyphony=1) for r in voices}


@lru_cache(maxsize=4096)
def _consonant_ons(vocab: Vocab, melody: frozenset[int], intervals: frozenset[int] = CONSONANT) -> np.ndarray:
    """Bool (V,): True except the note-ons that form none of `intervals` (consonant ones) with any of the
    melody's pitches."""
    out = np.ones(vocab.size, dtype=bool)
    pitches = np.arange(vocab.config.n_pitches)
    ok = np.zeros(vocab.config.n_pitches, dtype=bool)
    for m in melody:
        ok |= np.isin((m - pitches) % 12, sorted(intervals))
    out[vocab.note_on_base:vocab.note_on_base + vocab.config.n_pitches] = ok
    out.setflags(write=False)
    return out


@dataclass
class PlannedEvent:
    """A sideman note event of the plan, on the stream's grid."""

    tick: int
    on: bool
    pitch: int
    velocity: int
    role: int
    index: int  # its token's index in the plan (tokens after the base)
    committed: bool = False


@dataclass
class AccompanistStats:
    revisions: int = 0  # player events that cut the plan
    planned_tokens: int = 0  # sampled
    rolled_back_tokens: int = 0  # uncommitted tokens thrown away by revisions
    refed_events: int = 0  # committed events re-encoded after a player event before them
    dropped_uncommitted: int = 0  # planned events thrown away before they were committed
    rests: int = 0  # times the sideman finished at a bar line and rested
    expired_predictions: int = 0  # predictions of the player's taken out when their time passed unplayed


@dataclass
class _Heard:
    """When the sideman's voices were last heard in the stream (the entry and hold rules read it): part of
    the stream's state, so a cut takes it back with the encoder and grammar."""

    silent_since: int = 0  # the tick the sideman's last note event came (or the player began)
    last_event: dict[int, int] = field(default_factory=dict)  # role -> the tick of its last note event
    last_on: dict[int, int] = field(default_factory=dict)  # role -> the tick of its last note-on

    def hear(self, tick: int, role: int, on: bool) -> None:
        self.silent_since = max(self.silent_since, tick)
        self.last_event[role] = max(self.last_event.get(role, 0), tick)
        if on:
            self.last_on[role] = max(self.last_on.get(role, 0), tick)

    def copy(self) -> "_Heard":
        return _Heard(self.silent_since, dict(self.last_event), dict(self.last_on))


@dataclass
class _Base:
    """The stream right after the player's last event: where the plan's tokens begin."""

    position: int  # session position
    encoder: StreamEncoder
    grammar: GrammarState
    last_token: int | None
    heard: "_Heard"  # when the voices were last heard there


class Accompanist:
    """The plan over one model session (see the module docstring). Not thread-safe: one owner."""

    def __init__(self, session, vocab: Vocab, sampler: Sampler, meter: Meter = Meter(),
                 voices: Sequence[int] = VOICES, constraints: dict[int, Constraints] | None = None,
                 rest_after_ticks: int | None = None,
                 rollback: Callable[[int], None] | None = None, predict_player: bool = False,
                 consonance_guard: bool = True, voice_leading: bool = True,
                 consonance_repair: bool = True) -> None:
        self.session = session
        self.vocab = vocab
        self.sampler = sampler
        self.meter = meter
        self.voices = tuple(voices)
        self.constraints = dict(constraints or {})
        tpb = vocab.config.ticks_per_beat
        self.rest_after = tpb if rest_after_ticks is None else rest_after_ticks
        self._rollback = rollback or session.rollback
        # predict_player: the plan also samples the player's next events (as ReaLchords does), so the
        # sideman's plan assumes a melody rather than the player holding still; predicted events are never
        # played, and the player's real event cuts the plan at the first of them. Off by default: see
        # `sideman eval --task accompany` (the row "predicting the player") for what it changes
        self.predict_player = predict_player
        self._first_predicted: int | None = None  # index of the plan's first predicted player token
        self._first_predicted_tick = 0  # ... and its tick
        self._predicted_tick = -1  # the tick of the last predicted player token: no sideman event after it there
        # consonance_guard: while no sideman note sounding is consonant with the melody's, a voice's new note
        # must be (a voice may still pass through a dissonance while another holds the harmony)
        self.consonance_guard = consonance_guard
        # voice_leading: a voice's new note never moves in parallel fifths or octaves with a voice that moved
        # at the tick, nor crosses a neighbour (engine.model.voice_leading), while some note-on stays allowed
        self.voice_leading = voice_leading
        # consonance_repair: a melody note no voice is consonant with (the voices at its tick were decided
        # before it was known) gets one once it has sounded REPAIR_AFTER_BEATS, on the first sixteenth-note
        # line the plan may still change (at or after the floor): a voice moves to, or enters on, a
        # consonant note there
        self.consonance_repair = consonance_repair
        self._repair_tokens = (-1, 0)  # (tick, tokens sampled there while repairing): a bound, never a loop
        # pitch -> onset of the player's notes that came with the floor already past the next tick: no voice
        # could answer them at once, as one can at a window of zero (the model's own move on the next tick)
        self._unheard_onsets: dict[int, int] = {}
        self._mask_repair_line: int | None = None  # the repair line of the last mask()
        # while the player plays, the sideman enters on the next beat once it has been silent for a beat: a
        # plan can otherwise talk itself into a solo melody (no voice for bars, then none ever)
        self.enter_after = vocab.config.ticks_per_beat
        self._heard = _Heard()  # when each voice was last heard (or the player's start)
        # ... and each voice silent for a bar enters on the next beat (a chorale's voices do not drop out)
        self.voice_enter_after = meter.bar_ticks(vocab.config.ticks_per_beat)
        # ... and no voice holds one note longer than that: it strikes again on the next beat after
        self.hold_limit = self.voice_enter_after
        self.stats = AccompanistStats()
        self.floor = 0  # new sideman events only at ticks >= floor
        self.last_player_tick = -1  # the tick of the player's last event in the stream
        self.last_player_off = 0  # the tick the player last let go of every key
        self.started = False  # the player has played since the beginning (or since the last rest)
        self._fresh = True  # nothing played since begin()
        self.encoder = StreamEncoder(vocab, meter)
        self.grammar = GrammarState(vocab, meter, allow_eos=False)
        self.tokens: list[int] = []  # the plan: tokens after the base, fed to the session
        self.events: list[PlannedEvent] = []  # their sideman note events
        self._last_token: int | None = None
        # tokens in the stream (grammar, encoder, plan) not yet in the session: a revision's player tokens
        # and re-fed events go to the model in one batched feed before the next sample (see _sync)
        self._unfed: list[int] = []
        self._base: _Base | None = None
        # (plan tokens, encoder, grammar, when the voices were last heard) every CHECKPOINT_EVERY sampled
        # tokens: a cut restores the last one before it and replays only the tokens after (a replay of a
        # whole 2-beat plan cost ~2 ms live)
        self._checkpoints: list[tuple[int, StreamEncoder, GrammarState, _Heard]] = []
        self._closed_at: int | None = None  # the rest bar whose closing note-offs are in the plan

    # -- the stream ------------------------------------------------------------------------------

    def begin(self, style: str = "none") -> None:
        """A new stream: BOS, ACCOMPANY, the style."""
        self.session.reset()
        self._unfed = []
        self.encoder = StreamEncoder(self.vocab, self.meter)
        self.grammar = GrammarState(self.vocab, self.meter, allow_eos=False)
        self.tokens, self.events = [], []
        self.floor, self.last_player_tick, self.last_player_off, self.started = 0, -1, 0, False
        self._fresh = True
        self._unheard_onsets = {}
        self._closed_at = None
        self._feed(self.encoder.begin(style, "ACCOMPANY"))
        self._mark_base()

    @property
    def position(self) -> int:
        """The tick the plan has reached (the stream's position)."""
        return self.grammar.position

    @property
    def player_sounding(self) -> bool:
        """Whether the player holds a key (as they played it: predicted events do not count)."""
        enc = self._base.encoder if self._base is not None and self._first_predicted is not None else self.encoder
        return any(role == PLAYER for role, _ in enc.depth)

    @property
    def sideman_sounding(self) -> list[tuple[int, int]]:
        return sorted((r, p) for r, p in self.grammar.sounding if r != PLAYER)

    def rest_bar(self) -> int | None:
        """The bar line where the sideman rests if the player stays silent (None: the player plays on)."""
        if not self.started or self.player_sounding:
            return None
        target = self.last_player_off + self.rest_after
        bar = self.encoder.bar_ticks
        origin = self.encoder.next_bar % bar
        return _line_at_or_after(target, origin, bar)

    @property
    def resting(self) -> bool:
        """The plan has reached the rest bar and closed the sideman's notes there: nothing to generate."""
        rest = self.rest_bar()
        return rest is not None and self._closed_at == rest and self.position >= rest

    def generating(self) -> bool:
        return self.started and not self.resting

    # -- the player ------------------------------------------------------------------------------

    def player(self, tick: float, data: Sequence[int]) -> list[PlannedEvent]:
        """One of the player's messages at stream `tick`: cut the plan, feed it, re-feed what was committed.

        Returns the plan's events before the cut that were not committed yet (at ticks <= the player's:
        due now): they are in the stream, so they are committed now and must be played."""
        q = max(quantize(tick), self.last_player_tick, self._base_tick())
        floor = self.floor  # where the plan may change as the message comes (the live part: the window's end)
        due_now, refeed = self._cut(q)
        # cut at a prediction of the player's before q: the committed events up to q come before the event
        self._refeed([e for e in refeed if e.tick <= q])
        refeed = [e for e in refeed if e.tick > q]
        self.stats.revisions += 1
        enc = self.encoder
        is_note_on = len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0
        if is_note_on and not self.started:
            self._heard = _Heard(q, {r: q for r in VOICES}, {r: q for r in VOICES})
        if is_note_on:
            # the stream begins at the bar of the player's first note (no training piece opens with empty
            # bars); a later silence is shortened to SILENCE_KEEP_BARS empty bars
            self.grammar.skip(enc.skip_silence(q, 0 if self._fresh else SILENCE_KEEP_BARS))
            self.started, self._fresh = True, False
        out = enc.message(q, tuple(data), PLAYER)
        self.last_player_tick = max(self.last_player_tick, enc.position if out else q)
        if is_note_on:
            self._closed_at = None
        if not self.player_sounding and out:
            self.last_player_off = enc.position
        self._feed(out)
        if is_note_on:
            onset = self.grammar.on_tick.get((PLAYER, data[1]))
            if onset is not None and floor > onset + 1:
                # the voices could not answer it on the next tick (the commit window stood past it): the
                # consonance repair does not wait an eighth for this note (see _repair_line)
                self._unheard_onsets[data[1]] = onset
        self._mark_base()
        self.events = []  # kept events are before the base now: the plan starts empty ...
        self._refeed(refeed)  # ... but for the committed events past the player's, in stream order
        self.floor = max(self.floor, self.last_player_tick + 1)
        return due_now

    def withdraw_predictions(self) -> list[PlannedEvent]:
        """Take what the plan predicted of the player out of the stream (the player played something else,
        or nothing: the end of a melody); the committed events after it are re-fed. Returns the events
        before it that were not committed yet (committed now)."""
        if self._first_predicted is None:
            return []
        due_now, refeed = self._cut(None)
        self._refeed(refeed)
        return due_now

    @property
    def predicted_tick(self) -> int | None:
        """The tick of the plan's first prediction of the player (None: none)."""
        return self._first_predicted_tick if self._first_predicted is not None else None

    def expire_predictions(self, before_tick: float) -> list[PlannedEvent]:
        """The clock has passed `before_tick` and the player has not played what the plan predicted before
        it: take the prediction out now (withdraw_predictions), so the plan goes on from what the player
        really did, and the player's next event cuts the plan at its own tick, re-feeding only the committed
        events since (the revision's work stays small however late the player is)."""
        if self._first_predicted is None or self._first_predicted_tick >= before_tick:
            return []
        self.stats.expired_predictions += 1
        due_now = self.withdraw_predictions()
        # the voices go on from the next eighth-note line, never from the odd tick where the clock found the
        # prediction stale: a training piece's voices move on the beat's subdivisions
        step = max(1, self.vocab.config.ticks_per_beat // 2)
        origin = self.grammar.last_bar or 0
        self.floor = max(self.floor, _line_at_or_after(int(before_tick) + 1, origin, step))
        return due_now

    def _cut(self, q: int | None) -> tuple[list[PlannedEvent], list[PlannedEvent]]:
        """Truncate the plan at its first token past tick q (None: none) or its first prediction of the
        player, whichever comes first; returns (the events before the cut not committed yet, now committed;
        the committed events after it, to re-feed)."""
        cut = self._cut_index(q) if q is not None else len(self.tokens)
        if self._first_predicted is not None:  # what was predicted of the player goes, with all after it
            cut = min(cut, self._first_predicted)
        v = self.vocab
        while cut > 0 and (v.is_shift(t := self.tokens[cut - 1]) or v.is_role(t) or v.is_velocity(t)):
            # and the shifts, role and velocity changes just before the cut, which lead to nothing now: the
            # encoder writes one shift (and the role and velocity) to what comes next
            cut -= 1
        due_now = [e for e in self.events if e.index < cut and not e.committed]
        for e in due_now:
            e.committed = True
        refeed = [e for e in self.events if e.index >= cut and e.committed]
        self.stats.dropped_uncommitted += sum(1 for e in self.events if e.index >= cut and not e.committed)
        self.stats.rolled_back_tokens += len(self.tokens) - cut
        self._truncate(cut)
        return due_now, refeed

    def _refeed(self, events: list[PlannedEvent]) -> None:
        """Committed events into the stream again (re-encoded from the position), committed still."""
        enc = self.encoder
        replay: list[int] = []
        for e in events:
            replay += enc.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else enc.note_off(e.tick, e.pitch, e.role)
        self.stats.refed_events += len(events)
        if replay:
            start = len(self.tokens)
            self._feed(replay, plan=True)
            for e in self.events:  # the re-encoded events, each at its token (the decoder made them in order)
                if e.index >= start:
                    e.committed = True

    def _base_tick(self) -> int:
        return self._base.encoder.position if self._base is not None else 0

    def _cut_index(self, q: int) -> int:
        """The index of the plan's first token past tick q (its position after the token > q)."""
        pos = self._base.grammar.position if self._base is not None else 0
        v = self.vocab
        for i, t in enumerate(self.tokens):
            if v.is_shift(t):
                pos += v.shift_ticks(t)
            if pos > q:
                return i
        return len(self.tokens)

    def _truncate(self, cut: int) -> None:
        """The plan back to its first `cut` tokens: session, encoder, grammar, events."""
        base = self._base
        if cut >= len(self.tokens):
            return
        dropped = len(self.tokens) - cut
        if dropped <= len(self._unfed):  # never given to the model: nothing to roll back
            del self._unfed[len(self._unfed) - dropped:]
        else:  # the tokens not given to the model are all among the dropped: the session rolls back the rest
            self._unfed = []
            self._rollback(base.position + cut)
        kept = self.tokens[:cut]
        while self._checkpoints and self._checkpoints[-1][0] > cut:
            self._checkpoints.pop()
        start, encoder, grammar, heard = (self._checkpoints[-1] if self._checkpoints
                                          else (0, base.encoder, base.grammar, base.heard))
        self.encoder, self.grammar = encoder.copy(), grammar.copy()
        # when each voice was last heard goes back with the stream: a dropped plan's notes were never heard
        # (kept, a voice the plan meant to bring in later counted as sounding, and never had to enter)
        self._heard = heard.copy()
        for t in kept[start:]:
            self.encoder.observe(t)
            for ev in self.grammar.feed(t):
                self._hear(ev)
        self._last_token = kept[-1] if kept else base.last_token
        self.tokens = kept
        self.events = [e for e in self.events if e.index < cut]
        if self._first_predicted is not None and self._first_predicted >= cut:
            self._first_predicted = None
        if self._closed_at is not None and self.position < self._closed_at:
            self._closed_at = None

    def _mark_base(self) -> None:
        del self.grammar.decoder.bars[:-8]  # a record of every bar line: keep it from growing for hours
        self._base = _Base(self._stream_length(), self.encoder.copy(), self.grammar.copy(),
                           self._last_token, self._heard.copy())
        self.tokens = []
        self._checkpoints = []
        self._first_predicted = None

    def _stream_length(self) -> int:
        """The stream's length in tokens: the session's and the tokens still to give it."""
        return self.session.position + len(self._unfed)

    def _sync(self) -> None:
        """The tokens not yet given to the model, in one batched feed (one native call for a revision)."""
        if self._unfed:
            tokens, self._unfed = self._unfed, []
            self.session.feed(tokens)

    def _feed(self, tokens: list[int], plan: bool = False) -> None:
        """Tokens into the stream: the grammar (and, for plan tokens, the plan and its events) now, the
        session at the next _sync."""
        if not tokens:
            return
        self._unfed += tokens
        v = self.vocab
        for t in tokens:
            role = self.grammar.role
            for ev in self.grammar.feed(t):
                self._hear(ev)
                if plan and ev.role != PLAYER:
                    self.events.append(PlannedEvent(ev.tick, ev.on, ev.pitch, ev.velocity, ev.role,
                                                    len(self.tokens)))
            if plan and (t == v.role(PLAYER) or (role == PLAYER and (v.is_note_on(t) or v.is_note_off(t)
                                                                     or v.is_velocity(t)))):
                if self._first_predicted is None:
                    self._first_predicted = len(self.tokens)
                    self._first_predicted_tick = self.grammar.position
                self._predicted_tick = self.grammar.position
            if plan:
                self.tokens.append(t)
        self._last_token = tokens[-1]

    def _hear(self, ev) -> None:
        """A note event in the stream: a sideman voice heard at its tick (for the entry and hold rules)."""
        if ev.role != PLAYER:
            self._heard.hear(ev.tick, ev.role, ev.on)

    # -- the plan --------------------------------------------------------------------------------

    def mask(self) -> np.ndarray:
        """What the sideman may sample next (see the module docstring)."""
        g, v = self.grammar, self.vocab
        unsupported = self._unsupported_melody()
        repair_line = self._mask_repair_line = self._repair_line(unsupported)
        if g.bar_pending:
            mask = np.zeros(v.size, dtype=bool)
            mask[v.bar] = True
            return mask
        mask = np.zeros(v.size, dtype=bool)
        if self._first_predicted is not None and self._predicted_tick == g.position:
            mask |= allowed_mask_np(g, PLAYER)  # the player's (predicted) events at a tick come last there
        else:
            for role in self.voices + ((PLAYER,) if self.predict_player else ()):
                mask |= allowed_mask_np(g, role, self.constraints.get(role))
        mask[v.turn] = False
        mask[v.eos] = False
        ons = slice(v.note_on_base, v.note_on_base + v.config.n_pitches)
        # (only where a note may start: before the floor every note-on is masked below anyway)
        if self.voice_leading and g.role in self.voices and g.position >= self.floor and mask[ons].any():
            led = mask & voice_leading_ons(g, g.role)
            if led[ons].any():
                mask = led
        entry = self._entry_line()
        entering = entry[1] if entry is not None and entry[0] == g.position else []
        if entry is not None and entry[0] > g.position:
            # time on no further than the line where a voice must enter (a long shift would pass it by)
            mask[v.shift_base + entry[0] - g.position:v.shift_base + v.config.max_shift] = False
        if entering:
            keep = np.zeros(v.size, dtype=bool)
            keep[[v.role(r) for r in entering]] = True
            if g.role in entering:
                holding = [p for r, p in self.sideman_sounding if r == g.role]
                if holding:  # held too long: it lets go first (then strikes again here)
                    keep[[v.note_off(p) for p in holding]] = True
                else:
                    keep[v.vel_base:v.vel_base + v.config.velocity_bins] = True
                    keep[v.note_on_base:v.note_on_base + v.config.n_pitches] = True
            if (mask & keep).any():
                mask &= keep
        if self.consonance_guard and g.role != PLAYER and unsupported:
            mask &= _consonant_ons(v, unsupported)
        if repair_line is not None:
            # nothing of the player's is predicted before the repair (the sideman's events come first at a tick)
            shifts = slice(v.shift_base, v.shift_base + v.config.max_shift)
            if g.role not in self.voices:
                keep = np.zeros(v.size, dtype=bool)
                keep[[v.role(r) for r in self.voices]] = True
                keep[shifts] = True
                mask &= keep
            mask[v.role(PLAYER)] = False
            if repair_line == g.position:  # act here: no time on, the voice's new note consonant
                mask[shifts] = False
                mask &= _consonant_ons(v, unsupported)
                # a third or sixth where one is allowed: a fifth or octave struck under the melody's note would
                # move in parallel with the melody's next (decided before that note is known)
                imperfect = mask & _consonant_ons(v, unsupported, IMPERFECT)
                if imperfect[ons].any():
                    mask = imperfect
            else:  # time on no further than the line where the repair is due
                mask[v.shift_base + repair_line - g.position:shifts.stop] = False
        if g.position < self.floor:  # nothing new before the floor: one shift that reaches it (or the bar line)
            mask[: v.shift_base] = False
            mask[v.note_on_base:] = False
            mask[v.bar] = g.next_bar is None
            # never a run of short shifts (no training stream has one, and it throws the model off): the
            # model's own choice among the shifts long enough, i.e. its next event given none before the floor
            need = min(self.floor - g.position, g.shift_limit())
            mask[v.shift_base:v.shift_base + need - 1] = False
        rest = self.rest_bar()
        if rest is not None and rest - g.position < v.config.max_shift:
            mask[v.shift_base + max(0, rest - g.position):v.note_on_base] = False
        if self._last_token is not None and v.is_velocity(self._last_token):
            mask[v.vel_base:v.shift_base] = False
        if not mask.any():  # never stuck: one tick on
            mask[v.shift(1)] = True
        return mask

    def _unsupported_melody(self) -> frozenset[int]:
        """The melody's sounding pitches when no sideman note sounding is consonant with them (else empty)."""
        g = self.grammar
        melody = frozenset(p for r, p in g.sounding if r == PLAYER)
        if any((m - p) % 12 in CONSONANT for r, p in g.sounding if r != PLAYER for m in melody):
            return frozenset()
        return melody

    def _repair_line(self, unsupported: frozenset[int]) -> int | None:
        """The tick where a voice must move to give the melody's note a consonant voice (consonance repair),
        or None: the first sixteenth-note line at or after the floor, the plan's position and
        REPAIR_AFTER_BEATS into the melody's latest note. None while a
        voice is consonant with the melody, while the plan stands among the player's (predicted) events at
        a tick, past the next bar line (the BAR comes first), or once the repair at a tick has taken more
        tokens than a voice's move needs (a bound: the rule never holds the plan at a tick)."""
        if not self.consonance_repair or not self.started or not unsupported:
            return None
        g, v = self.grammar, self.vocab
        if self._first_predicted is not None and self._predicted_tick == g.position:
            return None
        step = max(1, v.config.ticks_per_beat // 4)
        origin = g.last_bar or 0
        onset = max(g.on_tick.get((PLAYER, m), 0) for m in unsupported)
        # a note the voices could not hear in time (the commit window) gets its voice as soon as the plan may
        # change; one they could hear waits an eighth (a passing note may pass against the voices)
        unheard = any(self._unheard_onsets.get(m) == g.on_tick.get((PLAYER, m)) for m in unsupported)
        wait = 0 if unheard else int(round(REPAIR_AFTER_BEATS * v.config.ticks_per_beat))
        line = _line_at_or_after(max(self.floor, g.position, onset + wait), origin, step)
        if g.next_bar is not None and line > g.next_bar:
            return None  # the bar line first (BAR); the rule looks again after it
        tick, count = self._repair_tokens
        if line == g.position and tick == g.position and count > 3 * len(self.voices):
            return None
        return line

    def _entry_line(self) -> tuple[int, list[int]] | None:
        """(the tick where voices must strike, those voices), or None. While the player plays: every voice
        when all have been silent for `enter_after` ticks, else each voice silent for `voice_enter_after`,
        and each voice that has held one note for `hold_limit` (it lets go, and strikes again at the same
        tick), on the next beat; where that beat can no longer be planned (past the plan's position or the
        floor: a player's note a little early cut the entry planned there, and the commit window has passed
        it), on the next eighth-note line after. Never a line before the floor or the plan's position."""
        g = self.grammar
        if not (self.started and self._player_in_phrase()):
            return None
        tpb = self.vocab.config.ticks_per_beat
        origin = g.last_bar or 0
        start = max(g.position, self.floor)
        held: dict[int, int] = {}  # voice -> the onset of its sounding note
        for r, p in self.sideman_sounding:
            held[r] = min(held.get(r, g.position), g.on_tick.get((r, p), g.position))
        h = self._heard
        lines = {}
        for r in self.voices:
            if r in held:
                due = held[r] + self.hold_limit
            elif (h.last_event.get(r) == g.position >= self.floor
                  and g.position - h.last_on.get(r, g.position) >= self.hold_limit):
                lines[r] = g.position  # let go here of a note held too long: strikes again here
                continue
            else:
                due = h.last_event.get(r, h.silent_since) + self.voice_enter_after
                if not held:
                    due = min(due, h.silent_since + self.enter_after)
            beat = _line_at_or_after(due, origin, tpb)
            lines[r] = beat if beat >= start else _line_at_or_after(start, origin, max(1, tpb // 2))
        if not lines:
            return None
        line = min(lines.values())
        return line, [r for r in self.voices if lines.get(r) == line]

    def _player_in_phrase(self) -> bool:
        """Whether the player plays at the plan's position as far as is known: a key held, or let go less than
        `rest_after` ago (a person's detached notes leave gaps between them: their voices still enter there)."""
        return self.player_sounding or self.position - self.last_player_off < self.rest_after

    def step(self) -> list[PlannedEvent]:
        """Sample one token of the plan (or, at the rest bar, close the sideman's notes there); returns
        the sideman events it made (uncommitted)."""
        n = len(self.events)
        rest = self.rest_bar()
        if rest is not None and self.position >= rest and not self.grammar.bar_pending:
            self._close_at(rest)
            return self.events[n:]
        self._sync()
        mask = self.mask()
        if self._mask_repair_line == self.position:  # the repair line mask() found
            tick, count = self._repair_tokens
            self._repair_tokens = (self.position, count + 1 if tick == self.position else 1)
        token = self.sampler.sample(self.session.logits, mask)
        self.stats.planned_tokens += 1
        self._feed([token], plan=True)
        self.encoder.observe(token)
        last = self._checkpoints[-1][0] if self._checkpoints else 0
        if len(self.tokens) - last >= CHECKPOINT_EVERY:  # encoder and grammar both past every plan token
            self._checkpoints.append((len(self.tokens), self.encoder.copy(), self.grammar.copy(), self._heard.copy()))
        return self.events[n:]

    def _close_at(self, tick: int) -> None:
        """Note-offs for every sounding sideman note at `tick` (the rest), as plan tokens."""
        out: list[int] = []
        for role, pitch in self.sideman_sounding:
            out += self.encoder.note_off(tick, pitch, role)
        self._feed(out, plan=True)
        self._closed_at = tick
        self.stats.rests += 1

    def close(self, tick: float) -> list[PlannedEvent]:
        """End now (Stop, a preset switch): the plan cut at `tick`, the sideman's notes closed there,
        committed; returns the closing events. The stream stays valid for what comes next."""
        q = max(quantize(tick), self._base_tick())
        _, refeed = self._cut(q)  # what is after q goes (the scheduler dropped it), committed or not ...
        self._refeed([e for e in refeed if e.tick <= q])  # ... what sounded stays (cut at a prediction before q)
        n = len(self.events)
        out: list[int] = []
        for role, pitch in self.sideman_sounding:
            out += self.encoder.note_off(q, pitch, role)
        self._feed(out, plan=True)
        closing = self.events[n:]
        for e in closing:
            e.committed = True
        self.started = False
        self.floor = max(self.floor, q + 1)
        self._sync()
        return closing

    def commit(self, before_tick: float) -> list[PlannedEvent]:
        """The plan's uncommitted events at ticks < `before_tick`, now committed, in stream order."""
        out = [e for e in self.events if not e.committed and e.tick < before_tick]
        for e in out:
            e.committed = True
        return out

    def uncommitted(self) -> list[PlannedEvent]:
        return [e for e in self.events if not e.committed]
