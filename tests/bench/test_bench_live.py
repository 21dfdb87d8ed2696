"""`sideman bench live`: a short simulated jam over the test JACK server, and its bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.bench.live import hanging, main, pair_timing
from engine.live.jack import read_xruns
from plumbing_model import plumbing_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return plumbing_model(tmp_path_factory.mktemp("model"))


def test_pair_timing_skips_unscheduled_sends_and_checks_the_order():
    records = [(1.000, 1.0001), (1.010, 1.0102)]
    sends = [(0.9, (0x80, 60, 0)), (1.0002, (0x90, 61, 90)), (1.005, (0xB0, 123, 0)), (1.0103, (0x80, 61, 0))]
    arrivals = [(0.902, [0x80, 60, 0]), (1.002, [0x90, 61, 90]), (1.007, [0xB0, 123, 0]), (1.012, [0x80, 61, 0])]
    timing, lost = pair_timing(records, sends, arrivals)
    assert timing == pytest.approx([0.002, 0.002]) and lost == 0
    swapped = [arrivals[0], arrivals[2], arrivals[1], arrivals[3]]  # sent together, handed over swapped
    assert pair_timing(records, sends, swapped)[0] == pytest.approx([0.002, 0.002])
    del arrivals[1]  # lost on the way
    timing, lost = pair_timing(records, sends, arrivals)
    assert timing == pytest.approx([0.002]) and lost == 1


def test_read_xruns_counts_late_cycles_and_names_late_clients(tmp_path):
    log = tmp_path / "jackd.log"
    log.write_text("JACK server starting in realtime mode with priority 10\n"
                   "JackEngine::XRun: client = bench-player was not finished, state = Triggered\n"
                   "JackEngine::XRun: client = sideman-01 was not finished, state = Running\n"
                   "JackAudioDriver::ProcessGraphAsyncMaster: Process error\n"
                   "no message buffer overruns\n"
                   "JackEngine::XRun: client = bench-player was not finished, state = Triggered\n"
                   "JackAudioDriver::ProcessGraphAsyncMaster: Process error\n")
    assert read_xruns(str(log)) == (2, {"bench-player": 2, "sideman-01": 1})
    assert read_xruns(str(tmp_path / "missing.log")) == (0, {})


def test_hanging_counts_open_notes_and_cc_123_closes_a_channel():
    assert hanging([(0x90, 60, 90), (0x91, 60, 90), (0x80, 60, 0)]) == 1
    assert hanging([(0x90, 60, 90), (0x90, 60, 0)]) == 0
    assert hanging([(0x90, 60, 90), (0x90, 64, 90), (0xB0, 123, 0)]) == 0


@pytest.mark.jack
def test_a_short_jam_loses_nothing_and_leaves_no_note_hanging(jack_server, model_path, capsys):
    assert main(["--json", "--minutes", "0.4", "--model", str(model_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("response_ready_ms_p50", "response_ready_ms_p99", "timing_error_ms_p99", "jack_period_ms",
                "lost_messages", "hanging_notes"):
        assert key in result
    assert result["jack_period_ms"] == pytest.approx(jack_server.period_ms, abs=0.01)
    assert result["player_messages"] > 0 and result["lost_messages"] == 0
    assert result["hanging_notes"] == 0  # the daemon closed every note it played
    if result["output_lost_in_jack"] == 0:  # JACK delivered everything (no xrun): so did the listener see it
        assert result["hanging_notes_received"] == 0 and result["hanging_notes_after_shutdown"] == 0
    assert result["answers"] >= 1 and result["timing_error_ms_n"] > 0
    assert result["response_ready_ms_n"] >= 1


RESTYLE_MODEL = Path(__file__).resolve().parents[2] / "models" / "restyle.pt"


@pytest.mark.jack
@pytest.mark.skipif(not RESTYLE_MODEL.exists(), reason="no restyle model (sideman train --config restyle)")
def test_a_short_restyle_jam_loses_nothing_and_leaves_no_note_hanging(jack_server, capsys):
    assert main(["--mode", "restyle", "--json", "--minutes", "0.4", "--candidates", "8"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mode"] == "restyle" and result["model"].endswith("restyle.pt")
    assert result["player_messages"] > 0 and result["lost_messages"] == 0
    assert result["hanging_notes"] == 0
    if result["output_lost_in_jack"] == 0:
        assert result["hanging_notes_received"] == 0 and result["hanging_notes_after_shutdown"] == 0
    assert result["answers"] >= 1 and result["response_ready_ms_n"] >= 1 and result["encode_ms_n"] >= 1
    among = result["candidates_chosen_among"]  # whole candidates each prepared answer chose among
    assert result["candidates"] == 8 and sum(among.values()) == result["prepared_answers_used"]
    assert all(1 <= int(k) <= 8 for k in among)


ACCOMPANIMENT_MODEL = Path(__file__).resolve().parents[2] / "models" / "accompaniment.pt"


@pytest.mark.jack
@pytest.mark.skipif(not ACCOMPANIMENT_MODEL.exists(), reason="no accompaniment model")
def test_a_short_accompaniment_bench_commits_inside_the_window_it_is_given_and_loses_nothing(jack_server, capsys):
    assert main(["--mode", "accompany", "--json", "--minutes", "0.4", "--speed", "2", "--commit-ms", "30",
                 "--offline-seeds", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mode"] == "accompany" and result["commit_ms"] == 30.0 and result["bpm"] == 180.0
    assert result["player_messages"] > 0 and result["lost_messages"] == 0
    assert result["hanging_notes"] == 0 and result["committed_notes"] > 0
    # every note was fixed at most the window before it sounds (a note due at once is committed at once); the
    # window is the adaptive one, between its floor and the 30 ms given
    assert result["adaptive_commit"] is True and result["commit_window_ms_n"] == result["committed_notes"]
    assert 15.0 <= result["commit_window_min_ms"] <= result["commit_window_ms_max"] <= 30.0
    assert result["commit_lead_ms_max"] <= 30.0 + 1.0
    # the model thread's CPU time in a revision is within its wall time; the reference's token steps were timed
    assert result["revision_cpu_ms_n"] == result["revision_work_ms_n"] > 0
    assert result["revision_cpu_ms_max"] <= result["revision_work_ms_max"] + 0.5
    assert result["token_step_offline_cpu_ms_n"] > 0 and len(result["cr_offline_per_seed"]) == 1
    assert 0.0 <= result["cr_live"] <= 1.0 and 0.0 <= result["cr_offline_window"] <= 1.0
    # every voice plays through the 8-bar melody as heard at the listener: none drops out for longer than a bar,
    # the wait for the next beat and a beat's rest of its own (a tenor once sat out whole melodies)
    assert set(result["voices"]) == {"alto", "tenor", "bass"}
    for name, voice in result["voices"].items():
        assert voice["notes"] >= 16 and voice["longest_silence_beats"] <= 6.5, (name, voice)
