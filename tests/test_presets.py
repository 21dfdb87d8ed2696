"""Presets: the shipped files load, round-trip through TOML, and bad files name file, field, allowed."""

from __future__ import annotations

import importlib

import tomllib
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import PresetError
from engine.presets import PRESET_DIR, Key, dump_preset, list_presets, load_preset, parse_key

SHIPPED = list_presets(PRESET_DIR)


def test_the_required_presets_ship():
    names = {p.stem for p in SHIPPED}
    assert {"default", "daw-sync", "free-tempo"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_preset_round_trips(path, tmp_path):
    preset = load_preset(path)
    copy = tmp_path / path.name
    copy.write_text(dump_preset(preset))
    for _, target in preset.program_change:  # references resolve next to the copy
        (tmp_path / target).write_text((PRESET_DIR / target).read_text())
    again = load_preset(copy)
    assert again == preset
    assert dump_preset(again) == dump_preset(preset)


def test_shipped_presets_say_what_they_are():
    default = load_preset(PRESET_DIR / "default.toml")
    assert (default.mode, default.clock.source, default.clock.bpm) == ("call_response", "internal", 100)
    assert load_preset(PRESET_DIR / "daw-sync.toml").clock.source == "midi"
    assert default.model == "models/continuation.pt"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


BAD = [
    # (toml, field named in the error, a piece of the allowed values)
    ('mode = "jam"', "mode", "call_response"),
    ('mode = "rhythm"', "mode", "call_response, accompany, restyle"),
    ('[restyle]\nstyle = "jazz"', "restyle.style", "chorale, folksong, fiddle, renaissance, medieval"),
    ("[restyle]\namount = 1.5", "restyle.amount", "[0, 1]"),
    ('[restyle]\nkeep = "both"', "restyle.keep", "nothing, rhythm, pitches"),
    ("[restyle]\nvoices = 2", "restyle.voices", "style, amount, keep"),
    ("[cc]\ntemperature = 21\nstyle = 21", "cc.style", "used once"),
    ('[accompany]\nvoices = ["soprano"]', "accompany.voices", '"alto", "tenor", "bass"'),
    ('[accompany]\nvoices = []', "accompany.voices", '"alto", "tenor", "bass"'),
    ("[accompany]\nchannels = [2, 3]", "accompany.channels", "alto, tenor and bass"),
    ("[accompany]\nchannels = [2, 3, 17]", "accompany.channels[2]", "1..16"),
    ("[accompany]\ncommit_ms = -5", "accompany.commit_ms", "[0, 500]"),
    ("[accompany]\ncommit_min_ms = 2", "accompany.commit_min_ms", "[5, 500]"),
    ('[accompany]\nadaptive_commit = "yes"', "accompany.adaptive_commit", "true or false"),
    ("[accompany]\nlookahead_beats = 0", "accompany.lookahead_beats", "[0.25, 8]"),
    ("[accompany]\nbass_range = [40, 42]", "accompany.bass_range", "highest >= lowest + 5"),
    ("[accompany]\ntenor_range = 50", "accompany.tenor_range", "[lowest, highest]"),
    ("[accompany]\nsoprano_range = [60, 80]", "accompany.soprano_range", "alto_range"),
    ("[accompany]\nconsonance_repair = 1", "accompany.consonance_repair", "true or false"),
    ("[monitor.programs]\nalto = 200", "monitor.programs.alto", "0..127"),
    ("tempo = 120", "tempo", "mode"),
    ("[clock]\nbpm = 0", "clock.bpm", "[20, 300]"),
    ('[clock]\nbpm = "fast"', "clock.bpm", "[20, 300]"),
    ("[clock]\nbpm = 120\nswing = 0.6", "clock.swing", "source, bpm, meter"),
    ('[clock]\nsource = "daw"', "clock.source", "internal, midi"),
    ('[clock]\nmeter = "4/3"', "clock.meter", "6/8"),
    ("[channels]\noutput = 17", "channels.output", "1..16"),
    ('[channels]\ninput = "some"', "channels.input", '"all"'),
    ('[constraints]\nkey = "H major"', "constraints.key", "C major"),
    ('[constraints]\nkey = "C lydian"', "constraints.key", "F# minor"),
    ("[constraints]\nkey = 3", "constraints.key", "none"),
    ("[constraints]\nlow = 80\nhigh = 40", "constraints.high", "80..127"),
    ("[sampling]\ntemperature = -1.0", "sampling.temperature", "(0, 5]"),
    ("[sampling]\ntop_p = 1.5", "sampling.top_p", "(0, 1]"),
    ("[sampling]\ntop_k = true", "sampling.top_k", "0..10000"),
    ('[response]\nlength_bars = "long"', "response.length_bars", '"match"'),
    ('[response]\nstart = "now"', "response.start", "beat, bar"),
    ('[response]\nextra_voices = "some"', "response.extra_voices", '"any"'),
    ("[response]\nextra_voices = 17", "response.extra_voices", "0..16"),
    ('[response]\nlongest_note_bars = "long"', "response.longest_note_bars", '"any"'),
    ("[response]\nlongest_note_bars = 0", "response.longest_note_bars", "1..64"),
    ("[phrase]\nsilence_beats = 0", "phrase.silence_beats", "(0, 32]"),
    ("[phrase]\nend_cc = 200", "phrase.end_cc", "0..127"),
    ("[cc]\npanic = 21\ntemperature = 21", "cc.panic", "used once"),
    ("[cc]\nvolume = 7", "cc.volume", "temperature, response_length, panic, mode"),
    ('[ports]\napi = "asio"', "ports.api", "alsa, jack"),
    ("[ports]\nconnect = 1", "ports.connect", "true or false"),
    ('[program_change]\n200 = "default.toml"', "program_change.200", "0..127"),
    ('[program_change]\n1 = "../etc/passwd"', "program_change.1", "same folder"),
    ('[program_change]\n1 = "nope.toml"', "program_change.1", "a preset file"),
    ('[monitor.programs]\ndrums = 33', "monitor.programs.drums", "player, sideman, alto, tenor, bass"),
    ("[monitor]\nenabled = \"yes\"", "monitor.enabled", "true or false"),
    ('model = "models/continuation.onnx"', "model", ".pt"),
    ("ports = 3", "ports", "a [ports] table"),
]


@pytest.mark.parametrize("text,field,allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_preset_names_file_field_and_allowed(tmp_path, text, field, allowed):
    path = write(tmp_path, text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    message = str(info.value)
    assert str(path) in message
    assert f": {field}:" in message
    assert "allowed:" in message and allowed in message


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(PresetError, match="not valid TOML"):
        load_preset(write(tmp_path, "mode = "))
    with pytest.raises(PresetError, match="no such preset file"):
        load_preset(tmp_path / "missing.toml")


def test_defaults_fill_omitted_sections(tmp_path):
    preset = load_preset(write(tmp_path, 'name = "minimal"'))
    assert preset.clock.source == "internal" and preset.channels.input is None
    assert preset.response.length_bars == 4 and preset.sampling.seed is None
    assert preset.response.extra_voices == 1


def test_extra_voices_any_lets_the_answer_be_as_thick_as_the_model_likes(tmp_path):
    from engine.live.part import PartConfig

    preset = load_preset(write(tmp_path, '[response]\nextra_voices = "any"'))
    assert preset.response.extra_voices is None and PartConfig.from_preset(preset).extra_voices is None
    assert PartConfig.from_preset(load_preset(write(tmp_path, "[response]\nextra_voices = 0"))).extra_voices == 0


def test_longest_note_bars_defaults_to_one_and_any_frees_it(tmp_path):
    from engine.live.part import PartConfig

    assert PartConfig.from_preset(load_preset(write(tmp_path, 'name = "minimal"'))).longest_note_bars == 1
    preset = load_preset(write(tmp_path, '[response]\nlongest_note_bars = "any"'))
    assert preset.response.longest_note_bars is None and PartConfig.from_preset(preset).longest_note_bars is None
    assert load_preset(write(tmp_path, "[response]\nlongest_note_bars = 2")).response.longest_note_bars == 2


@pytest.mark.parametrize(
    "text,tonic_pc,pcs",
    [("C major", 0, {0, 2, 4, 5, 7, 9, 11}), ("A minor", 9, {9, 11, 0, 2, 4, 5, 7}), ("Bb major", 10, None),
     ("f# minor", 6, None)],
)
def test_keys(text, tonic_pc, pcs):
    key = parse_key(text)
    assert isinstance(key, Key) and key.tonic_pc == tonic_pc
    if pcs is not None:
        assert key.pitch_classes() == pcs
    assert parse_key("none") is None


def test_dump_is_valid_toml_for_every_shipped_preset():
    for path in SHIPPED:
        data = tomllib.loads(dump_preset(load_preset(path)))
        assert data["mode"] == load_preset(path).mode


def test_cli_lists_and_checks(capsys, tmp_path):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "daw-sync" in out and "free-tempo" in out
    assert main(["presets", "--check", str(PRESET_DIR / "default.toml")]) == 0
    bad = write(tmp_path, "[clock]\nbpm = 1000")
    assert main(["presets", "--check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "clock.bpm" in out and str(bad) in out


def test_a_planned_mode_is_refused_by_name_with_the_modes_this_build_has(tmp_path, monkeypatch):
    import engine.presets

    monkeypatch.setattr(engine.presets, "PLANNED", ("harmonize",))
    with pytest.raises(PresetError) as info:
        load_preset(write(tmp_path, 'mode = "harmonize"'))
    message = str(info.value)
    assert "'harmonize' is not in this build" in message and "allowed: call_response, accompany, restyle" in message


def test_the_restyle_preset_reads_its_table_and_round_trips(tmp_path):
    p = load_preset(PRESET_DIR / "restyle.toml")
    assert p.mode == "restyle" and p.model == "models/restyle.pt"
    assert (p.restyle.style, p.restyle.amount, p.restyle.keep, p.restyle.style_programs) == ("fiddle", 1.0, "nothing", True)
    assert p.cc.style == 30 and p.cc.amount == 31
    q = load_preset(write(tmp_path, 'mode = "restyle"\n[restyle]\nstyle = "medieval"\namount = 0.25\nkeep = "rhythm"'))
    assert (q.restyle.style, q.restyle.amount, q.restyle.keep) == ("medieval", 0.25, "rhythm")
    again = tmp_path / "again.toml"
    again.write_text(dump_preset(q))
    assert load_preset(again).restyle == q.restyle
    assert "as medieval (amount 0.25, keep rhythm)" in q.summary()
    assert p.restyle.candidates == 1 and q.restyle.candidates == 1  # one line, as it is written
    more = load_preset(write(tmp_path, 'mode = "restyle"\n[restyle]\ncandidates = 8'))
    assert more.restyle.candidates == 8
    with pytest.raises(PresetError, match="restyle.candidates"):
        load_preset(write(tmp_path, 'mode = "restyle"\n[restyle]\ncandidates = 40'))


def test_the_accompany_table_reads_voices_channels_window_and_ranges(tmp_path):
    p = load_preset(write(tmp_path, 'mode = "accompany"\n[accompany]\nvoices = ["bass", "alto"]\n'
                                    'channels = [5, 6, 7]\ncommit_ms = 30\nbass_range = [30, 55]'))
    a = p.accompany
    assert a.voices == (1, 3) and a.channels == (5, 6, 7) and a.commit_ms == 30.0 and a.ranges[2] == (30, 55)
    assert "alto+bass" in p.summary() and "commit 15-30 ms (adaptive)" in p.summary()
    assert a.consonance_repair is True  # on unless the preset says otherwise
    assert a.adaptive_commit is True and a.commit_min_ms == 15.0
    fixed = load_preset(write(tmp_path, 'mode = "accompany"\n[accompany]\ncommit_ms = 30\nadaptive_commit = false\n'
                                        'commit_min_ms = 20'))
    assert fixed.accompany.adaptive_commit is False and fixed.accompany.commit_min_ms == 20.0
    assert "commit 30 ms," in fixed.summary()
    off = load_preset(write(tmp_path, 'mode = "accompany"\n[accompany]\nconsonance_repair = false'))
    assert off.accompany.consonance_repair is False


def test_the_live_accompaniment_takes_the_presets_rules_to_its_planner(tmp_path):
    from engine.live.modes.accompany import AccompanyConfig

    preset = load_preset(write(tmp_path, 'mode = "accompany"\n[accompany]\nconsonance_repair = false\n'
                                    'voice_leading = false'))
    config = AccompanyConfig.from_preset(preset)
    assert config.consonance_repair is False and config.voice_leading is False and config.consonance_guard is True


def test_every_mode_a_preset_accepts_is_one_the_factory_builds():
    from engine.live.modes import BUILT
    from engine.presets import MODES

    assert set(MODES) == set(BUILT)
    for name, module in BUILT.items():
        classes = [v for v in vars(importlib.import_module(module)).values()
                   if isinstance(v, type) and getattr(v, "name", None) == name]
        assert classes, f"{module} defines no mode named {name!r}"
