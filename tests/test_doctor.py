"""`sideman doctor`: real probes of this machine (JACK, rtmidi, SoundFont, torch), real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.doctor import (
    CheckResult,
    DoctorContext,
    Status,
    check_jack_server,
    check_models,
    check_presets,
    check_soundfont,
    exit_code,
    format_text,
    run_checks,
)


def doctor_json(root, repo_root) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "-q", "doctor", "--json", "--root", str(root)],
        cwd=repo_root, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.jack
def test_doctor_finds_the_jack_server_and_its_virtual_ports(jack_server, tmp_path, repo_root):
    rc, report = doctor_json(tmp_path, repo_root)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["JACK server"]["status"] == "OK"
    assert jack_server.name in checks["JACK server"]["detail"]
    assert checks["virtual ports"]["status"] == "OK"
    assert "Jack: OK" in checks["virtual ports"]["lines"]
    assert checks["torch"]["status"] == "OK" and "device" in checks["torch"]["detail"]
    assert checks["models"]["status"] == "WARN" and checks["models"]["fix"] == "sideman train"
    # nothing FAILs on this machine once JACK is up: exit code 0 and "ok"
    assert [c["name"] for c in report["checks"] if c["status"] == "FAIL"] == []
    assert rc == 0 and report["ok"] is True
    assert report["counts"]["OK"] + report["counts"]["WARN"] == len(report["checks"])


def test_no_jack_server_is_reported_with_its_name_and_the_fix(monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "sideman-test-nobody-here")
    before = os.environ.get("JACK_NO_START_SERVER")
    result = check_jack_server(DoctorContext(root=Path.cwd()))
    assert result.status is Status.WARN
    assert "sideman-test-nobody-here" in result.detail
    assert "jackd -d dummy" in result.fix
    assert os.environ.get("JACK_NO_START_SERVER") == before  # the probe restores the environment


def test_models_and_their_cards(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    ctx = DoctorContext(root=tmp_path)
    assert check_models(ctx).status is Status.WARN  # none yet: fix is `sideman train`

    (models / "continue.pt").write_bytes(b"\0" * 1000)
    result = check_models(ctx)
    assert result.status is Status.WARN and "no card continue.card.json" in result.lines[0]

    (models / "continue.card.json").write_text(json.dumps({"name": "continue", "steps": 3000, "val_loss": 1.9}))
    result = check_models(ctx)
    assert result.status is Status.OK
    assert "name=continue" in result.lines[0] and "steps=3000" in result.lines[0]

    (models / "continue.card.json").write_text("{not json")
    assert check_models(ctx).status is Status.FAIL


def test_presets_invalid_one_fails(tmp_path):
    presets = tmp_path / "presets"
    presets.mkdir()
    ctx = DoctorContext(root=tmp_path)
    assert check_presets(ctx).status is Status.WARN
    (presets / "broken.toml").write_text("this is = = not toml [\n")
    result = check_presets(ctx)
    assert result.status is Status.FAIL  # invalid preset, or engine.presets missing: either way not OK
    assert "broken.toml" in " ".join(result.lines) or "engine.presets" in result.detail


def test_missing_soundfont_names_the_fix(tmp_path):
    result = check_soundfont(DoctorContext(root=tmp_path, soundfont=str(tmp_path / "none.sf2")))
    assert result.status is Status.WARN
    assert "apt-get install fluid-soundfont-gm" in result.fix


def test_a_crashing_check_is_a_fail_not_a_crash(tmp_path):
    def check_broken(ctx):
        raise RuntimeError("boom")

    def check_fine(ctx):
        return CheckResult("fine", Status.OK, "all good")

    def check_not_here(ctx):
        return None

    results = run_checks(DoctorContext(root=tmp_path), (check_fine, check_broken, check_not_here))
    assert [(r.name, r.status) for r in results] == [("fine", Status.OK), ("broken", Status.FAIL)]
    assert exit_code(results) == 1 and exit_code(results[:1]) == 0
    text = format_text(results)
    assert "FAIL  broken" in text and "boom" in text and "fix: please report" in text
    assert text.endswith("1 OK, 0 WARN, 1 FAIL")
