"""Restyling a phrase with the restyle model (runtime side: a ModelSession over the TorchScript file).

    restyler = Restyler(session)                       # session over models/restyle.pt
    settings = RestyleSettings(style="fiddle", amount=1.0, keep="nothing")
    out = restyler.restyle(melody, settings)           # a Melody as long as the source, in its meter

    decode = restyler.begin(melody, settings)          # live: one token at a time
    while not decode.done:
        events = decode.step()                         # DecodedEvents (tick from the phrase's first bar line)

The condition is [z_b, style]: z_b the encoder's posterior mean for bar b of the phrase (as the player played
it; a model with one latent per phrase gives one z for every bar), switched at each bar line the decoder
writes, so bar b of the restyled line is written from bar b of the phrase; style a point between the phrase's
own style (the critic's estimate: a played phrase has no label) and the target,
`(1 - amount) * own + amount * target`. Amount 0 gives the phrase back in its own style, 1 fully restyled.

The knobs besides style and amount:
    keep = "nothing"   the model writes the line (rhythm and pitches), conditioned on the phrase's z
    keep = "rhythm"    the phrase's own onsets and lengths, the model chooses every pitch: the same gesture,
                       in time with what was played, with the target style's melody (an echo in another style)
    keep = "pitches"   the phrase's own pitches in order, the model chooses when each sounds (whenever it
                       would start a note, the note is the phrase's next pitch): the same tune, phrased in
                       the target style's rhythm (a folk tune as a chorale line)
    guidance           how far each token's choice is pushed from the phrase's own style towards the target:
                       the logits are l(z, style) + guidance * (l(z, style) - l(z, own)), classifier-free
                       guidance's form with the own style as the contrast. 0 is the decoder alone (the
                       condition is too weak in it: a restyled phrase mostly keeps its own style); the
                       contrast is decoded on a second session (`ModelSession.twin`), so each token costs
                       two decode steps. Amount 0 makes the two conditions equal: no push
    register = 12      the restyled line stays within the phrase's own range widened by this many semitones
                       each side (None: anywhere the constraints allow): a sideman plays back in the
                       register it heard, never more than an octave outside it. Guidance pushes toward each
                       style's own register too (the fiddle tunes sit high): without this, 12-14 % of guided
                       notes fell more than an octave outside the phrase's range, against 6 % unguided
    temperature, top_p the sampler's
    candidates > 1     several restyled phrases are sampled and the one kept is the best by the critic's
                       probability of the target style (with the file's n-gram critic, the mean of the two:
                       engine.model.style_ngram) plus 1.5 x its chroma similarity to the phrase (`score`);
                       offline all of them, live as many whole ones as the silence before the phrase end
                       allows (engine.live.modes.restyle)
    rebar = True       the model reads and writes the phrase in the target style's bar lines where its bar
                       splits evenly into one (`engine.music.barring`: a 4/2 phrase as 4/4 for a chorale);
                       the result is in the phrase's own meter. The critic's estimate of the phrase's own
                       style reads it as barred
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from engine.errors import ModelError, SidemanError
from engine.model.grammar import GrammarState
from engine.model.sampler import Constraints, Sampler, SamplingConfig, allowed_mask_np
from engine.model.style_ngram import StyleNgram, read_style_ngram
from engine.music.barring import barred_for
from engine.music.melody import NO_STYLE, ROLE, Melody, decode_melody, encode_melody
from engine.music.similarity import chroma_similarity
from engine.music.styles import STYLE_NAMES, style_index
from engine.music.tokens import DecodedEvent
from engine.music.vocab import DEFAULT_VOCAB, Vocab

# The pick's weight on chroma against the critics' p(target) (each 0..1). Chosen on validation phrases
# (scripts/experiment_critic_pick.py --split val, 16 candidates, clean and as played; docs/benchmarks.md):
# 1.5 gave target style 0.70 at chroma 0.61 with both critics; 1.0 the same style at chroma 0.60. Checked again
# on the file taught by back-translation: 1.5 0.713 at 0.614, 2.0 0.697 at 0.625.
PICK_CHROMA_WEIGHT = 1.5

KEEP = ("nothing", "rhythm", "pitches")
MAX_GUIDANCE = 4.0
MAX_REGISTER = 24
HEADER = 4  # BOS, RESTYLE, STYLE_none, the first BAR: fed, never sampled


@dataclass(frozen=True)
class RestyleSettings:
    style: str = "chorale"
    amount: float = 1.0
    keep: str = "nothing"
    guidance: float = 1.5  # 0 = the decoder alone; see the module docstring
    register: int | None = 12  # semitones beyond the phrase's own range each side; None = any
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.8, top_p=0.95))
    candidates: int = 1
    rebar: bool = True  # the target style's bar lines for the model (see the module docstring)
    constraints: Constraints | None = None
    max_tokens_per_bar: int = 96  # a safety stop for a model that will not move time

    def __post_init__(self) -> None:
        style_index(self.style)
        if not 0.0 <= self.amount <= 1.0:
            raise SidemanError(f"amount {self.amount:g} is out of range: 0 (the phrase's own style) .. 1 (the target)")
        if not 0.0 <= self.guidance <= MAX_GUIDANCE:
            raise SidemanError(f"guidance {self.guidance:g} is out of range: 0 (off) .. {MAX_GUIDANCE:g}")
        if self.register is not None and not 0 <= self.register <= MAX_REGISTER:
            raise SidemanError(f"register {self.register} is out of range: 0 .. {MAX_REGISTER} semitones beyond the "
                               "phrase's range, or any")
        if self.keep not in KEEP:
            raise SidemanError(f"keep {self.keep!r}: choose one of {', '.join(KEEP)}")
        if not 1 <= self.candidates <= 16:
            raise SidemanError(f"candidates must be 1..16, not {self.candidates}")


def check_restyle_card(card: dict, path) -> None:
    """A model file for restyling: its task and its styles (a clear error naming the fix)."""
    if card.get("task") != "RESTYLE" or "restyle" not in card:
        raise ModelError(f"{path}: a model trained for {card.get('task', 'CONTINUE')}, not RESTYLE; restyle needs "
                         "models/restyle.pt (or train one with `sideman train --config restyle`)")
    if list(card.get("styles", [])) != list(STYLE_NAMES):
        raise ModelError(f"{path}: trained for the styles {card.get('styles')}, the runtime knows {list(STYLE_NAMES)}; "
                         "retrain it with `sideman train --config restyle`")


class Restyler:
    """Restyles phrases with one ModelSession (not thread-safe: one owner drives it)."""

    def __init__(self, session, vocab: Vocab = DEFAULT_VOCAB, guide=None) -> None:
        """`guide`: the session that decodes the own-style contrast for guidance (default: the session's
        twin, made now, so that no phrase end waits for it)."""
        self.session = session
        self.vocab = vocab
        check_restyle_card(session.card, session.name)
        self.z_dim = int(session.card["restyle"]["z_dim"])
        self.anchored = bool(session.card["restyle"].get("anchor", False))  # the decoder reads the phrase's anchor
        self.n_styles = len(STYLE_NAMES)
        self.guide = guide if guide is not None else session.twin()
        self.ngram = self._style_ngram(session)  # the pick's second critic, when the file carries one
        self._encoded: tuple | None = None  # the last phrase begun: (melody, (style, rebar), (own, view, tokens, z))

    @staticmethod
    def _style_ngram(session) -> StyleNgram | None:
        if not session.card["restyle"].get("ngram_critic"):
            return None
        ngram = read_style_ngram(session.path)
        if ngram is None:
            raise ModelError(f"{session.path}: the card names a style n-gram critic the file does not hold (copied "
                             "without it?); attach it again with `sideman train --config style-ngram --set "
                             f"model={session.path} --set out={session.path}`")
        if ngram.styles != list(STYLE_NAMES):
            raise ModelError(f"{session.path}: the style n-gram critic knows the styles {ngram.styles}, the runtime "
                             f"{list(STYLE_NAMES)}; attach it again with `sideman train --config style-ngram`")
        return ngram

    def _tensor(self, tokens: list[int]) -> torch.Tensor:
        return torch.tensor([tokens], dtype=torch.long, device=self.session.device)  # (1, T)

    def own_style(self, tokens: list[int]) -> np.ndarray:
        """(S,): the critic's probabilities of the phrase's own style."""
        with torch.inference_mode():
            logits = self.session.module.critic_logits(self._tensor(tokens))
        return torch.softmax(logits.float(), -1).cpu().numpy()

    def latent(self, tokens: list[int]) -> np.ndarray:
        """(N, Z): the posterior mean of each of the phrase's N bars (N = 1 for a model with one z a phrase)."""
        with torch.inference_mode():
            z = self.session.module.encode(self._tensor(tokens)).float().cpu().numpy()
        return z.reshape(-1, self.z_dim)

    def decoder_latents(self, tokens: list[int]) -> np.ndarray:
        """(N, Z + A): what the decoder reads a bar: each bar's z, beside the phrase's anchor (its pitch
        classes, mean pitch and range) for a model trained with one (A = 0 otherwise)."""
        z = self.latent(tokens)  # (N, Z)
        if not self.anchored:
            return z
        with torch.inference_mode():
            a = self.session.module.anchor(self._tensor(tokens)).float().cpu().numpy()  # (A,)
        return np.hstack([z, np.broadcast_to(a, (len(z), len(a)))]).astype(np.float32)

    def style_vector(self, own: np.ndarray, style: str, amount: float) -> np.ndarray:
        target = np.zeros(self.n_styles, dtype=np.float32)
        target[style_index(style)] = 1.0
        return ((1.0 - amount) * own + amount * target).astype(np.float32)

    def begin(self, melody: Melody, settings: RestyleSettings, source_tokens: list[int] | None = None,
              seed: int | None = None) -> "RestyleDecode":
        own, view, tokens, z = self._encode(melody, settings, source_tokens)
        style = self.style_vector(own, settings.style, settings.amount)
        conditions = [BarConditions(self.session, z, style)]
        logits = self.session
        if settings.guidance > 0 and settings.amount > 0:
            conditions.append(BarConditions(self.guide, z, own.astype(np.float32)))
            logits = GuidedLogits(self.session, self.guide, settings.guidance)
        for c in conditions:
            c.start()
        sampling = settings.sampling if seed is None else SamplingConfig(
            settings.sampling.temperature, settings.sampling.top_k, settings.sampling.top_p, seed)
        return RestyleDecode(self, view, tokens, settings, Sampler(sampling), logits, conditions, source=melody)

    def _encode(self, melody: Melody, settings: RestyleSettings, source_tokens: list[int] | None):
        """The phrase's own style, the view the model reads (the target's bar lines), its tokens and its
        latents; the same phrase begun again with the same style (the next candidate) reuses them."""
        key = (settings.style, settings.rebar)
        last = self._encoded
        if source_tokens is None and last is not None and last[0] is melody and last[1] == key:
            return last[2]
        max_len = int(self.session.card["restyle"]["max_len"])
        tokens = source_tokens if source_tokens is not None else encode_melody(melody, self.vocab)
        tokens = tokens[:max_len]
        own = self.own_style(tokens)  # the phrase as barred: the critic learned each style in its own meters
        view = barred_for(melody, settings.style, self.vocab) if settings.rebar else melody
        if view is not melody:
            tokens = encode_melody(view, self.vocab)[:max_len]
        z = self.decoder_latents(tokens)  # (N, Z [+ A]): one a bar of the view
        encoded = (own, view, tokens, z)
        self._encoded = (melody, key, encoded) if source_tokens is None else None
        return encoded

    def restyle(self, melody: Melody, settings: RestyleSettings, seed: int | None = None) -> Melody:
        """The phrase restyled; with `candidates` > 1 the one that best keeps both (`score`): the critics'
        probability of the target style plus 1.5 x the chroma similarity to the phrase (each 0..1). Candidate
        k of seed s samples with seed s * candidates + k, so two seeds never share a candidate (with s + k,
        seeds 1, 2 and 3 shared most of theirs and gave the same phrase)."""
        best, best_score = None, -1.0
        for k in range(settings.candidates):
            decode = self.begin(melody, settings, seed=candidate_seed(seed, settings.candidates, k))
            decode.run()
            if settings.candidates == 1:
                return decode.result()
            score = self.score(melody, decode)
            if score > best_score:
                best, best_score = decode.result(), score
        return best

    def score(self, melody: Melody, decode: "RestyleDecode") -> float:
        """A finished candidate's worth (0..2.5): the critic's probability of the target style, hearing it as
        the model wrote it (the target's bar lines), plus PICK_CHROMA_WEIGHT x its chroma similarity to the
        phrase `melody`. With the file's n-gram critic (`engine.model.style_ngram`), the style term is the two
        critics' mean."""
        out = decode.result()
        heard = Melody(out.notes, decode.meter, decode.bars)
        target = style_index(decode.settings.style)
        style = float(self.own_style(encode_melody(heard, self.vocab))[target])
        if self.ngram is not None:
            style = 0.5 * (style + float(self.ngram.probabilities(out, self.vocab)[target]))
        return style + PICK_CHROMA_WEIGHT * chroma_similarity(melody, out, self.vocab)


def candidate_seed(seed: int | None, candidates: int, k: int) -> int | None:
    """Candidate k's sampling seed for a draw seeded `seed` (None: unseeded): seed * candidates + k, so two
    seeds never share a candidate."""
    return None if seed is None else seed * candidates + k


def register_constraints(settings: RestyleSettings, melody: Melody) -> Constraints:
    """The settings' constraints (default: the piano's range) narrowed to the phrase's range widened by
    `settings.register` semitones each side; as they were when that leaves no pitch."""
    base = settings.constraints or Constraints(low=21, high=108)
    if settings.register is None or not len(melody.notes):
        return base
    pitches = melody.notes[:, 2]
    low = max(base.low, int(pitches.min()) - settings.register)
    high = min(base.high, int(pitches.max()) + settings.register)
    return replace(base, low=low, high=high) if low <= high else base


class BarConditions:
    """One session's condition for each bar, [z_b, style]: the first bar's from `start()` (which also empties
    the session's cache), the next bar's at each bar line (`next_bar()`; past the phrase's last bar, its last)."""

    def __init__(self, session, z: np.ndarray, style: np.ndarray) -> None:
        """z (N, Z) one row a bar; style (S,)."""
        self.session = session
        self.rows = [torch.from_numpy(np.concatenate([row, style]).astype(np.float32)) for row in z]
        self.bar = 0

    def start(self) -> None:
        self.bar = 0
        self.session.set_condition(self.rows[0])
        self.session.reset()

    def next_bar(self) -> None:
        self.bar += 1
        if self.bar < len(self.rows):
            self.session.set_condition(self.rows[self.bar])


class GuidedLogits:
    """Two sessions fed the same tokens, one conditioned on the target style, one on the phrase's own; the
    logits (1 + w) * target - w * own (w: the guidance)."""

    def __init__(self, target, own, weight: float) -> None:
        self.target, self.own, self.weight = target, own, float(weight)

    def _mix(self, target: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        return target + self.weight * (target - own)  # (V,)

    def feed(self, tokens: list[int]) -> torch.Tensor:
        return self._mix(self.target.feed(tokens), self.own.feed(tokens))

    def append(self, token: int) -> torch.Tensor:
        return self._mix(self.target.append(token), self.own.append(token))


class RestyleDecode:
    """One restyled phrase being written: `step()` writes one token and returns the notes it makes."""

    def __init__(self, restyler: Restyler, melody: Melody, source_tokens: list[int], settings: RestyleSettings,
                 sampler: Sampler, logits=None, conditions: list[BarConditions] = (),
                 source: Melody | None = None) -> None:
        """`melody`: the phrase as the model reads it (its bar lines are the ones written); `source`: the
        phrase as played, whose meter the result is in (default: `melody`); `logits`: what the tokens are fed
        to for the next logits (the session, or GuidedLogits); `conditions`: the sessions' per-bar
        conditions, moved on at each bar line the line crosses."""
        v = restyler.vocab
        self.vocab = v
        self.model = logits if logits is not None else restyler.session  # fed every token; gives the next logits
        self.conditions = list(conditions)
        self.settings = settings
        self.sampler = sampler
        self.meter = melody.meter  # the model's bar lines
        self.bars = melody.bars
        self.source = source if source is not None else melody
        self.end = melody.length_ticks(v)
        # a fresh stream: ROLE_player comes before the first note, as in every training stream (with the
        # decoder's default role the grammar would forbid it, and the line would start off the training data)
        self.state = GrammarState(v, melody.meter, allow_eos=False, role_written=False)
        self.tokens: list[int] = []
        self.done = False
        self.budget = self.bars * settings.max_tokens_per_bar
        header = [v.bos, v.task("RESTYLE"), v.style(NO_STYLE), v.bar]
        self._logits = self.model.feed(header)
        self.state.feed_all(header)
        self.tokens += header
        # keep = rhythm: the source's own tokens after the header, each note-on's pitch chosen by the model
        self._plan = list(source_tokens[HEADER:]) if settings.keep == "rhythm" else []
        self._pitch_map: dict[int, int] = {}
        # keep = pitches: the source's pitches in order
        self._pitches = [int(p) for p in melody.pitches] if settings.keep == "pitches" else []
        # one line: never two notes at once; inside the piano unless the caller narrows it, and near the
        # phrase's own register (settings.register)
        self._constraints = replace(register_constraints(settings, melody), max_polyphony=1)
        first = int(melody.notes[0, 0]) if len(melody.notes) else 0
        self._latest_entry = min(first + v.config.ticks_per_beat, self.end - 1)
        self._entered = False

    @property
    def position(self) -> int:
        return self.state.position

    def step(self) -> list[DecodedEvent]:
        if self.done:
            return []
        token = self._next_token()
        if token is None:
            self.done = True
            return []
        self.tokens.append(token)
        self._entered = self._entered or self.vocab.is_note_on(token)
        events = self.state.feed(token)
        self.budget -= 1
        if self.state.position >= self.end or self.budget <= 0:
            self.done = True
        else:
            if token == self.vocab.bar:  # the next bar is written from the phrase's next bar (fed with its z)
                for c in self.conditions:
                    c.next_bar()
            self._logits = self.model.append(token)
        return [e for e in events if e.tick < self.end or not e.on]

    def run(self) -> None:
        while not self.done:
            self.step()

    def result(self) -> Melody:
        """The restyled phrase in the source's meter (the same ticks whatever bar lines the model wrote)."""
        written = decode_melody(self.tokens, self.meter, self.bars, self.vocab)
        return Melody(written.notes, self.source.meter, self.source.bars)

    # -- choosing the next token ---------------------------------------------------------------
    def _mask(self) -> np.ndarray:
        v = self.vocab
        mask = allowed_mask_np(self.state, ROLE, self._constraints)
        mask[v.turn] = False
        mask[v.eos] = False
        if not self._entered:  # the line comes in within a beat of where the phrase did: never a silent phrase
            room = self._latest_entry - self.state.position
            mask[v.shift_base + max(0, min(room, v.config.max_shift)):v.shift_base + v.config.max_shift] = False
        return mask

    def _next_token(self) -> int | None:
        v = self.vocab
        if self.settings.keep == "rhythm":
            return self._next_in_rhythm()
        mask = self._mask()
        if self.settings.keep == "pitches" and not self._pitches:
            mask[v.note_on_base:v.note_on_base + v.config.n_pitches] = False  # every pitch placed: rest
        if not mask.any():
            return None
        token = self.sampler.sample(self._logits, mask)
        if self.settings.keep == "pitches" and v.is_note_on(token):
            # the model chose that a note starts now (all its note-ons' mass); the pitch is the phrase's next
            token = v.note_on(self._pitches.pop(0))
        return token

    def _next_in_rhythm(self) -> int | None:
        v = self.vocab
        while self._plan:
            t = self._plan.pop(0)
            if t == v.eos:
                return None
            if v.is_note_on(t):
                mask = np.zeros(v.size, dtype=bool)
                mask[v.note_on_base:v.note_on_base + v.config.n_pitches] = True
                mask &= self._mask()
                for p in self.state.sounding_pitches(ROLE):
                    mask[v.note_on(p)] = False
                if not mask.any():
                    self._pitch_map[v.pitch_of(t)] = -1
                    continue
                token = self.sampler.sample(self._logits, mask)
                self._pitch_map[v.pitch_of(t)] = v.pitch_of(token)
                return token
            if v.is_note_off(t):
                pitch = self._pitch_map.pop(v.pitch_of(t), -1)
                if pitch < 0:
                    continue
                return v.note_off(pitch)
            return t
        return None


__all__ = ["KEEP", "BarConditions", "GuidedLogits", "candidate_seed", "register_constraints", "RestyleDecode", "RestyleSettings", "Restyler", "check_restyle_card"]
