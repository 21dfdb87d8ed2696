"""Presets: TOML files under presets/ that describe a whole jam session, as frozen dataclasses.

`load_preset(path)` validates every field; any problem raises PresetError naming the file, the
field (dotted path) and what is allowed. `dump_preset(preset)` writes TOML that loads back equal.
Channels are numbered 1..16 as on instruments; `.index` properties give the 0-based number.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.errors import PresetError
from engine.live.commit_window import FLOOR_MS
from engine.live.modes import BUILT, PLANNED
from engine.music.harmony import VOICE_RANGES
from engine.music.styles import STYLE_NAMES

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

MODES = tuple(BUILT)  # the modes this build has (engine.live.modes); PLANNED ones are refused by name
APIS = ("default", "alsa", "jack", "coremidi", "winmm")
CLOCK_SOURCES = ("internal", "midi")
RESPONSE_STARTS = ("beat", "bar")
DENOMINATORS = (1, 2, 4, 8, 16, 32)
KEY_MODES = ("major", "minor")
TONICS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10)  # natural minor
MONITOR_PARTS = ("player", "sideman")


# -- the dataclasses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    tonic: str  # "C", "F#", "Bb"
    mode: str  # "major" | "minor"

    @property
    def tonic_pc(self) -> int:
        pc = TONICS[self.tonic[0]]
        for accidental in self.tonic[1:]:
            pc += 1 if accidental == "#" else -1
        return pc % 12

    def pitch_classes(self) -> frozenset[int]:
        steps = MAJOR_STEPS if self.mode == "major" else MINOR_STEPS
        return frozenset((self.tonic_pc + s) % 12 for s in steps)

    def __str__(self) -> str:
        return f"{self.tonic} {self.mode}"


@dataclass(frozen=True)
class Ports:
    api: str = "default"
    input: str = "sideman in"
    output: str = "sideman out"
    connect: bool = False  # connect to existing ports (Windows: loopMIDI) instead of opening virtual ones


@dataclass(frozen=True)
class Channels:
    input: int | None = None  # 1..16, None = all channels
    output: int = 1

    @property
    def input_index(self) -> int | None:
        return None if self.input is None else self.input - 1

    @property
    def output_index(self) -> int:
        return self.output - 1


@dataclass(frozen=True)
class ClockSettings:
    source: str = "internal"  # "internal" | "midi"
    bpm: float = 100.0  # tempo of the internal clock; the fallback before MIDI clock arrives
    meter: tuple[int, int] = (4, 4)


@dataclass(frozen=True)
class PhraseSettings:
    silence_beats: float = 2.0
    end_cc: int | None = None
    max_bars: int | None = 8


@dataclass(frozen=True)
class Response:
    length_bars: int | None = 4  # None = "match" the phrase's length
    start: str = "bar"  # "beat" | "bar"
    extra_voices: int | None = 1  # the answer at most this many voices thicker than the phrase; None = "any"
    longest_note_bars: int | None = 1  # no answer note held longer than this or the phrase's longest; None = "any"

    @property
    def match(self) -> bool:
        return self.length_bars is None


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int | None = None


@dataclass(frozen=True)
class Constraints:
    key: Key | None = None
    low: int = 21
    high: int = 108
    max_polyphony: int = 8


VOICE_NAMES = ("alto", "tenor", "bass")  # the accompaniment's voices: the sideman's roles 1, 2, 3


@dataclass(frozen=True)
class Accompany:
    """mode = "accompany": the sideman's voices under the player's melody."""

    voices: tuple[int, ...] = (1, 2, 3)  # roles that play (1 alto, 2 tenor, 3 bass)
    channels: tuple[int, int, int] = (2, 3, 4)  # 1-based MIDI channel of alto, tenor, bass
    commit_ms: float = 50.0  # the window in front of the clock: fixed, or the longest the adaptive one may be
    adaptive_commit: bool = True  # the window follows the model thread's measured lag (engine.live.commit_window)
    commit_min_ms: float = FLOOR_MS  # the adaptive window's shortest
    lookahead_beats: float = 2.0  # how far ahead the plan reaches
    rest_after_beats: float = 1.0  # the player silent this long: finish at the next bar line, then rest
    ranges: tuple[tuple[int, int], ...] = VOICE_RANGES  # lowest, highest pitch per voice
    predict_player: bool = True  # the plan also predicts the player's next events (engine.model.accompanist)
    consonance_guard: bool = True  # no new voice note leaves the melody without a consonant voice
    voice_leading: bool = True  # no parallel fifths/octaves with a voice moving with it, no crossed voices
    consonance_repair: bool = True  # a note of yours with no consonant voice for an eighth gets one (next 16th)


RESTYLE_KEEP = ("nothing", "rhythm", "pitches")


@dataclass(frozen=True)
class Restyle:
    """mode = "restyle": the player's phrase played back in another style from the next bar."""

    style: str = "chorale"  # the target style (engine.music.styles)
    amount: float = 1.0  # 0 = the phrase's own style .. 1 = the target's
    keep: str = "nothing"  # nothing | rhythm (the phrase's own rhythm) | pitches (its own pitches, in order)
    guidance: float = 1.5  # 0 = the decoder alone .. 4: how hard each note is pushed from the own style to the target
    register: int | None = 12  # the restyled line within the phrase's range +- this many semitones; None = "any"
    candidates: int = 1  # whole restyled phrases written while the silence before the phrase end lasts; the best plays
    style_programs: bool = True  # a Program Change 0..4 no preset is mapped to picks the style


@dataclass(frozen=True)
class CCMap:
    temperature: int | None = None
    response_length: int | None = None
    panic: int | None = None
    mode: int | None = None
    voice_alto: int | None = None  # accompaniment: a voice on (>= 64) or off
    voice_tenor: int | None = None
    voice_bass: int | None = None
    commit_ms: int | None = None  # accompaniment: the commit window, 10-200 ms
    lookahead: int | None = None  # accompaniment: the lookahead, 0.5-4 beats
    style: int | None = None  # restyle: the target style (the CC's range in five equal steps)
    amount: int | None = None  # restyle: the amount, 0..127 -> 0..1


@dataclass(frozen=True)
class Monitor:
    enabled: bool = False
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    player_program: int = 0  # General MIDI program (0-based) for the player's part
    sideman_program: int = 0
    voice_programs: tuple[int, int, int] = (52, 52, 52)  # accompaniment: alto, tenor, bass (52: choir aahs)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    mode: str = "call_response"
    model: str = "models/continuation.pt"
    ports: Ports = Ports()
    channels: Channels = Channels()
    clock: ClockSettings = ClockSettings()
    phrase: PhraseSettings = PhraseSettings()
    response: Response = Response()
    sampling: Sampling = Sampling()
    constraints: Constraints = Constraints()
    cc: CCMap = CCMap()
    program_change: tuple[tuple[int, str], ...] = ()  # (program number 0..127, preset file name)
    monitor: Monitor = Monitor()
    accompany: Accompany = Accompany()
    restyle: Restyle = Restyle()
    path: Path | None = field(default=None, compare=False)

    def summary(self) -> str:
        """One line for `sideman presets`."""
        clock = "MIDI clock" if self.clock.source == "midi" else f"{self.clock.bpm:g} BPM"
        meter = f"{self.clock.meter[0]}/{self.clock.meter[1]}"
        length = "match" if self.response.match else f"{self.response.length_bars} bars"
        key = str(self.constraints.key) if self.constraints.key else "any key"
        if self.mode == "accompany":
            voices = "+".join(VOICE_NAMES[r - 1] for r in self.accompany.voices)
            a = self.accompany
            commit = (f"commit {a.commit_min_ms:g}-{a.commit_ms:g} ms (adaptive)"
                      if a.adaptive_commit and a.commit_ms > a.commit_min_ms else f"commit {a.commit_ms:g} ms")
            return (f"accompany, {clock} {meter}, {voices}, {commit}, "
                    f"lookahead {self.accompany.lookahead_beats:g} beats, {key}")
        if self.mode == "restyle":
            r = self.restyle
            return (f"restyle, {clock} {meter}, as {r.style} (amount {r.amount:g}, keep {r.keep}), "
                    f"as long as the phrase from the next bar")
        return f"{self.mode}, {clock} {meter}, response {length} from next {self.response.start}, {key}"


# -- validation helpers ------------------------------------------------------------------------


class _Ctx:
    """Where we are (file and dotted field) so every error names both."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, problem: str, allowed: str) -> PresetError:
        return PresetError(f"{self.file}: {path}: {problem}; allowed: {allowed}")

    def table(self, data: Any, path: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(data, dict):
            raise self.fail(path, f"expected a table, got {_show(data)}", f"a [{path}] table with {', '.join(allowed)}")
        for key in data:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                raise self.fail(where, "unknown field", ", ".join(allowed))
        return data

    def choice(self, value: Any, path: str, choices: tuple) -> Any:
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise self.fail(path, f"got {_show(value)}", ", ".join(map(str, choices)))
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"got {_show(value)}", "true or false")
        return value

    def string(self, value: Any, path: str, allowed: str = "a non-empty string") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"got {_show(value)}", allowed)
        return value

    def integer(self, value: Any, path: str, low: int, high: int, extra: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(path, f"got {_show(value)}", f"an integer {low}..{high}{extra}")
        return value

    def number(self, value: Any, path: str, low: float, high: float, low_open: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (low < value if low_open else low <= value) and value <= high
        if not ok:
            bracket = "(" if low_open else "["
            raise self.fail(path, f"got {_show(value)}", f"a number in {bracket}{low:g}, {high:g}]")
        return float(value)

    def optional_cc(self, value: Any, path: str) -> int | None:
        if value is False or value == "none":
            return None
        return self.integer(value, path, 0, 127, ', or "none"')


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def parse_key(text: str) -> Key | None:
    """ "C major", "F# minor", "Bb major" -> Key; "none" -> None. Raises ValueError."""
    if text.strip().lower() == "none":
        return None
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(text)
    tonic, mode = parts
    tonic = tonic[0].upper() + tonic[1:]
    if tonic[0] not in TONICS or any(c not in "#b" for c in tonic[1:]) or len(tonic) > 2:
        raise ValueError(text)
    if mode.lower() not in KEY_MODES:
        raise ValueError(text)
    return Key(tonic, mode.lower())


# -- sections ----------------------------------------------------------------------------------


def _fields(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _ports(ctx: _Ctx, raw: dict) -> Ports:
    d = ctx.table(raw, "ports", _fields(Ports))
    return Ports(
        api=ctx.choice(d.get("api", Ports.api), "ports.api", APIS),
        input=ctx.string(d.get("input", Ports.input), "ports.input", "a port name (or part of one, with connect = true)"),
        output=ctx.string(d.get("output", Ports.output), "ports.output", "a port name (or part of one, with connect = true)"),
        connect=ctx.boolean(d.get("connect", Ports.connect), "ports.connect"),
    )


def _channels(ctx: _Ctx, raw: dict) -> Channels:
    d = ctx.table(raw, "channels", _fields(Channels))
    value = d.get("input", "all")
    inp = None if value == "all" else ctx.integer(value, "channels.input", 1, 16, ', or "all"')
    return Channels(input=inp, output=ctx.integer(d.get("output", Channels.output), "channels.output", 1, 16))


def _meter(ctx: _Ctx, value: Any) -> tuple[int, int]:
    allowed = 'a string "N/D" with N 1..32 and D one of 1, 2, 4, 8, 16, 32 (e.g. "4/4", "6/8")'
    if isinstance(value, str) and value.count("/") == 1:
        num, den = value.split("/")
        if num.strip().isdigit() and den.strip().isdigit():
            n, d = int(num), int(den)
            if 1 <= n <= 32 and d in DENOMINATORS:
                return (n, d)
    raise ctx.fail("clock.meter", f"got {_show(value)}", allowed)


def _clock(ctx: _Ctx, raw: dict) -> ClockSettings:
    d = ctx.table(raw, "clock", _fields(ClockSettings))
    return ClockSettings(
        source=ctx.choice(d.get("source", ClockSettings.source), "clock.source", CLOCK_SOURCES),
        bpm=ctx.number(d.get("bpm", ClockSettings.bpm), "clock.bpm", 20, 300),
        meter=_meter(ctx, d.get("meter", "4/4")),
    )


def _phrase(ctx: _Ctx, raw: dict) -> PhraseSettings:
    d = ctx.table(raw, "phrase", _fields(PhraseSettings))
    max_bars = d.get("max_bars", PhraseSettings.max_bars)
    return PhraseSettings(
        silence_beats=ctx.number(d.get("silence_beats", PhraseSettings.silence_beats), "phrase.silence_beats", 0, 32, low_open=True),
        end_cc=ctx.optional_cc(d.get("end_cc", "none"), "phrase.end_cc"),
        max_bars=None if max_bars == "none" else ctx.integer(max_bars, "phrase.max_bars", 1, 64, ', or "none"'),
    )


def _response(ctx: _Ctx, raw: dict) -> Response:
    d = ctx.table(raw, "response", _fields(Response))
    length = d.get("length_bars", Response.length_bars)
    extra = d.get("extra_voices", Response.extra_voices)
    longest = d.get("longest_note_bars", Response.longest_note_bars)
    return Response(
        length_bars=None if length == "match" else ctx.integer(length, "response.length_bars", 1, 64, ', or "match"'),
        start=ctx.choice(d.get("start", Response.start), "response.start", RESPONSE_STARTS),
        extra_voices=None if extra == "any" else ctx.integer(extra, "response.extra_voices", 0, 16, ', or "any"'),
        longest_note_bars=None if longest == "any" else ctx.integer(longest, "response.longest_note_bars", 1, 64,
                                                                    ', or "any"'),
    )


def _sampling(ctx: _Ctx, raw: dict) -> Sampling:
    d = ctx.table(raw, "sampling", _fields(Sampling))
    seed = d.get("seed", "random")
    return Sampling(
        temperature=ctx.number(d.get("temperature", Sampling.temperature), "sampling.temperature", 0, 5, low_open=True),
        top_k=ctx.integer(d.get("top_k", Sampling.top_k), "sampling.top_k", 0, 10_000, " (0 = off)"),
        top_p=ctx.number(d.get("top_p", Sampling.top_p), "sampling.top_p", 0, 1, low_open=True),
        seed=None if seed == "random" else ctx.integer(seed, "sampling.seed", 0, 2**63 - 1, ', or "random"'),
    )


def _constraints(ctx: _Ctx, raw: dict) -> Constraints:
    d = ctx.table(raw, "constraints", _fields(Constraints))
    key_text = d.get("key", "none")
    allowed_key = '"none" or "<tonic> major|minor" with tonic A-G and optional # or b (e.g. "C major", "F# minor")'
    if not isinstance(key_text, str):
        raise ctx.fail("constraints.key", f"got {_show(key_text)}", allowed_key)
    try:
        key = parse_key(key_text)
    except ValueError:
        raise ctx.fail("constraints.key", f"got {_show(key_text)}", allowed_key) from None
    low = ctx.integer(d.get("low", Constraints.low), "constraints.low", 0, 127)
    high = ctx.integer(d.get("high", Constraints.high), "constraints.high", 0, 127)
    if high < low:
        raise ctx.fail("constraints.high", f"{high} is below constraints.low = {low}", f"an integer {low}..127")
    return Constraints(
        key=key,
        low=low,
        high=high,
        max_polyphony=ctx.integer(d.get("max_polyphony", Constraints.max_polyphony), "constraints.max_polyphony", 1, 16),
    )


def _cc(ctx: _Ctx, raw: dict) -> CCMap:
    d = ctx.table(raw, "cc", _fields(CCMap))
    values = {name: ctx.optional_cc(d.get(name, "none"), f"cc.{name}") for name in _fields(CCMap)}
    seen: dict[int, str] = {}
    for name, number in values.items():
        if number is None:
            continue
        if number in seen:
            raise ctx.fail(f"cc.{name}", f"CC {number} is already used by cc.{seen[number]}", "a CC number used once")
        seen[number] = name
    return CCMap(**values)


def _program_change(ctx: _Ctx, raw: dict) -> tuple[tuple[int, str], ...]:
    if not isinstance(raw, dict):
        raise ctx.fail("program_change", f"expected a table, got {_show(raw)}", 'a table of "program" = "file.toml"')
    out = []
    for key, value in raw.items():
        path = f"program_change.{key}"
        if not key.isdigit() or not 0 <= int(key) <= 127:
            raise ctx.fail(path, "the program number must be an integer", "program numbers 0..127 as keys")
        if not isinstance(value, str) or not value.endswith(".toml") or "/" in value or "\\" in value:
            raise ctx.fail(path, f"got {_show(value)}", "a preset file name in the same folder, e.g. \"daw-sync.toml\"")
        out.append((int(key), value))
    return tuple(sorted(out))


def _monitor(ctx: _Ctx, raw: dict) -> Monitor:
    d = ctx.table(raw, "monitor", ("enabled", "soundfont", "programs"))
    programs = ctx.table(d.get("programs", {}), "monitor.programs", MONITOR_PARTS + VOICE_NAMES)
    gm = " (General MIDI, 0-based)"
    return Monitor(
        enabled=ctx.boolean(d.get("enabled", Monitor.enabled), "monitor.enabled"),
        soundfont=ctx.string(d.get("soundfont", Monitor.soundfont), "monitor.soundfont", "a path to a .sf2 file"),
        player_program=ctx.integer(programs.get("player", 0), "monitor.programs.player", 0, 127, gm),
        sideman_program=ctx.integer(programs.get("sideman", 0), "monitor.programs.sideman", 0, 127, gm),
        voice_programs=tuple(ctx.integer(programs.get(name, Monitor.voice_programs[i]), f"monitor.programs.{name}",
                                         0, 127, gm) for i, name in enumerate(VOICE_NAMES)),
    )


def _accompany(ctx: _Ctx, raw: dict) -> Accompany:
    d = ctx.table(raw, "accompany", ("voices", "channels", "commit_ms", "adaptive_commit", "commit_min_ms",
                                     "lookahead_beats", "rest_after_beats",
                                     "predict_player", "consonance_guard", "voice_leading", "consonance_repair")
                  + tuple(f"{v}_range" for v in VOICE_NAMES))
    names = d.get("voices", list(VOICE_NAMES))
    allowed_voices = 'a list of some of "alto", "tenor", "bass", e.g. ["alto", "tenor", "bass"]'
    if not isinstance(names, list) or not names or any(n not in VOICE_NAMES for n in names) or len(set(names)) != len(names):
        raise ctx.fail("accompany.voices", f"got {_show(names)}", allowed_voices)
    channels = d.get("channels", list(Accompany.channels))
    if not isinstance(channels, list) or len(channels) != 3:
        raise ctx.fail("accompany.channels", f"got {_show(channels)}",
                       "three MIDI channels 1..16 for alto, tenor and bass, e.g. [2, 3, 4]")
    channels = tuple(ctx.integer(c, f"accompany.channels[{i}]", 1, 16) for i, c in enumerate(channels))
    ranges = []
    for i, name in enumerate(VOICE_NAMES):
        value = d.get(f"{name}_range", list(Accompany.ranges[i]))
        path = f"accompany.{name}_range"
        if not isinstance(value, list) or len(value) != 2:
            raise ctx.fail(path, f"got {_show(value)}", "[lowest, highest] MIDI pitches, e.g. [53, 77]")
        low, high = (ctx.integer(v, path, 0, 127) for v in value)
        if high < low + 5:
            raise ctx.fail(path, f"{low}..{high} is narrower than 6 semitones", "[lowest, highest] with highest >= lowest + 5")
        ranges.append((low, high))
    return Accompany(
        voices=tuple(sorted(VOICE_NAMES.index(n) + 1 for n in names)),
        channels=channels,
        commit_ms=ctx.number(d.get("commit_ms", Accompany.commit_ms), "accompany.commit_ms", 0, 500),
        adaptive_commit=ctx.boolean(d.get("adaptive_commit", Accompany.adaptive_commit), "accompany.adaptive_commit"),
        commit_min_ms=ctx.number(d.get("commit_min_ms", Accompany.commit_min_ms), "accompany.commit_min_ms", 5, 500),
        lookahead_beats=ctx.number(d.get("lookahead_beats", Accompany.lookahead_beats), "accompany.lookahead_beats",
                                   0.25, 8),
        rest_after_beats=ctx.number(d.get("rest_after_beats", Accompany.rest_after_beats),
                                    "accompany.rest_after_beats", 0.25, 16),
        ranges=tuple(ranges),
        predict_player=ctx.boolean(d.get("predict_player", Accompany.predict_player), "accompany.predict_player"),
        consonance_guard=ctx.boolean(d.get("consonance_guard", Accompany.consonance_guard),
                                     "accompany.consonance_guard"),
        voice_leading=ctx.boolean(d.get("voice_leading", Accompany.voice_leading), "accompany.voice_leading"),
        consonance_repair=ctx.boolean(d.get("consonance_repair", Accompany.consonance_repair),
                                      "accompany.consonance_repair"),
    )


def _restyle(ctx: _Ctx, raw: dict) -> Restyle:
    d = ctx.table(raw, "restyle", ("style", "amount", "keep", "guidance", "register", "candidates",
                                      "style_programs"))
    register = d.get("register", Restyle.register)
    return Restyle(
        style=ctx.choice(d.get("style", Restyle.style), "restyle.style", STYLE_NAMES),
        amount=ctx.number(d.get("amount", Restyle.amount), "restyle.amount", 0, 1),
        keep=ctx.choice(d.get("keep", Restyle.keep), "restyle.keep", RESTYLE_KEEP),
        guidance=ctx.number(d.get("guidance", Restyle.guidance), "restyle.guidance", 0, 4),
        register=None if register == "any" else ctx.integer(register, "restyle.register", 0, 24, ', or "any"'),
        candidates=ctx.integer(d.get("candidates", Restyle.candidates), "restyle.candidates", 1, 16),
        style_programs=ctx.boolean(d.get("style_programs", Restyle.style_programs), "restyle.style_programs"),
    )


_TOP = ("name", "description", "mode", "model", "ports", "channels", "clock", "phrase", "response",
        "sampling", "constraints", "cc", "program_change", "monitor", "accompany", "restyle")


def parse_preset(data: dict, file: str, default_name: str = "preset") -> Preset:
    """Validate a parsed TOML document; `file` names it in errors."""
    ctx = _Ctx(file)
    ctx.table(data, "", _TOP)
    model = ctx.string(data.get("model", Preset.model), "model", 'a TorchScript file under models/, e.g. "models/continuation.pt"')
    if not model.endswith(".pt"):
        raise ctx.fail("model", f"got {model!r}", 'a TorchScript file ending in .pt, e.g. "models/continuation.pt"')
    return Preset(
        name=ctx.string(data.get("name", default_name), "name"),
        description=_description(ctx, data.get("description", "")),
        mode=_mode(ctx, data.get("mode", Preset.mode)),
        model=model,
        ports=_ports(ctx, data.get("ports", {})),
        channels=_channels(ctx, data.get("channels", {})),
        clock=_clock(ctx, data.get("clock", {})),
        phrase=_phrase(ctx, data.get("phrase", {})),
        response=_response(ctx, data.get("response", {})),
        sampling=_sampling(ctx, data.get("sampling", {})),
        constraints=_constraints(ctx, data.get("constraints", {})),
        cc=_cc(ctx, data.get("cc", {})),
        program_change=_program_change(ctx, data.get("program_change", {})),
        monitor=_monitor(ctx, data.get("monitor", {})),
        accompany=_accompany(ctx, data.get("accompany", {})),
        restyle=_restyle(ctx, data.get("restyle", {})),
    )


def _mode(ctx, value: Any) -> str:
    if value in PLANNED:
        raise ctx.fail("mode", f"{value!r} is not in this build yet (it is planned)", ", ".join(MODES))
    return ctx.choice(value, "mode", MODES)


def _description(ctx: _Ctx, value: Any) -> str:
    if not isinstance(value, str):
        raise ctx.fail("description", f"got {_show(value)}", "a string")
    return value


def load_preset(path: str | Path, check_references: bool = True) -> Preset:
    """Read and validate a preset file. With check_references, program_change targets must exist."""
    path = Path(path)
    if not path.is_file():
        raise PresetError(f"{path}: no such preset file; `sideman presets` lists the shipped ones (in {PRESET_DIR})")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    preset = parse_preset(data, str(path), default_name=path.stem)
    if check_references:
        for program, target in preset.program_change:
            if not (path.parent / target).is_file():
                raise PresetError(
                    f"{path}: program_change.{program}: {target!r} does not exist; "
                    f"allowed: a preset file in {path.parent}"
                )
    return replace(preset, path=path)


def list_presets(directory: str | Path = PRESET_DIR) -> list[Path]:
    return sorted(Path(directory).glob("*.toml"))


# -- writing -----------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_dict(preset: Preset) -> dict:
    """The TOML document of a preset (what `parse_preset` accepts)."""
    c = preset.constraints
    return {
        "name": preset.name,
        "description": preset.description,
        "mode": preset.mode,
        "model": preset.model,
        "ports": {"api": preset.ports.api, "input": preset.ports.input, "output": preset.ports.output,
                  "connect": preset.ports.connect},
        "channels": {"input": "all" if preset.channels.input is None else preset.channels.input,
                     "output": preset.channels.output},
        "clock": {"source": preset.clock.source, "bpm": preset.clock.bpm,
                  "meter": f"{preset.clock.meter[0]}/{preset.clock.meter[1]}"},
        "phrase": {"silence_beats": preset.phrase.silence_beats,
                   "end_cc": "none" if preset.phrase.end_cc is None else preset.phrase.end_cc,
                   "max_bars": "none" if preset.phrase.max_bars is None else preset.phrase.max_bars},
        "response": {"length_bars": "match" if preset.response.match else preset.response.length_bars,
                     "start": preset.response.start,
                     "extra_voices": "any" if preset.response.extra_voices is None else preset.response.extra_voices,
                     "longest_note_bars": ("any" if preset.response.longest_note_bars is None
                                           else preset.response.longest_note_bars)},
        "sampling": {"temperature": preset.sampling.temperature, "top_k": preset.sampling.top_k,
                     "top_p": preset.sampling.top_p,
                     "seed": "random" if preset.sampling.seed is None else preset.sampling.seed},
        "constraints": {"key": "none" if c.key is None else str(c.key), "low": c.low, "high": c.high,
                        "max_polyphony": c.max_polyphony},
        "cc": {name: "none" if getattr(preset.cc, name) is None else getattr(preset.cc, name)
               for name in _fields(CCMap)},
        "program_change": {str(k): v for k, v in preset.program_change},
        "monitor": {"enabled": preset.monitor.enabled, "soundfont": preset.monitor.soundfont,
                    "programs": {"player": preset.monitor.player_program,
                                 "sideman": preset.monitor.sideman_program,
                                 **dict(zip(VOICE_NAMES, preset.monitor.voice_programs))}},
        "accompany": {"voices": [VOICE_NAMES[r - 1] for r in preset.accompany.voices],
                      "channels": list(preset.accompany.channels), "commit_ms": preset.accompany.commit_ms,
                      "adaptive_commit": preset.accompany.adaptive_commit,
                      "commit_min_ms": preset.accompany.commit_min_ms,
                      "lookahead_beats": preset.accompany.lookahead_beats,
                      "rest_after_beats": preset.accompany.rest_after_beats,
                      "predict_player": preset.accompany.predict_player,
                      "consonance_guard": preset.accompany.consonance_guard,
                      "voice_leading": preset.accompany.voice_leading,
                      "consonance_repair": preset.accompany.consonance_repair,
                      **{f"{name}_range": list(preset.accompany.ranges[i]) for i, name in enumerate(VOICE_NAMES)}},
        "restyle": {"style": preset.restyle.style, "amount": preset.restyle.amount, "keep": preset.restyle.keep,
                    "guidance": preset.restyle.guidance,
                    "register": "any" if preset.restyle.register is None else preset.restyle.register,
                    "candidates": preset.restyle.candidates,
                    "style_programs": preset.restyle.style_programs},
    }


def dump_preset(preset: Preset) -> str:
    """TOML text that `load_preset` reads back to an equal Preset."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    for key, value in to_dict(preset).items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    while tables:
        name, table = tables.pop(0)
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, dict):
                tables.insert(0, (f"{name}.{key}", value))
            else:
                lines.append(f'"{key}" = {_toml_value(value)}' if key.isdigit() else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
