"""`sideman doctor`: what works on this machine, and the fix for what does not.

Each check is a small function `check_x(ctx) -> CheckResult | None` (None: not applicable here,
e.g. the ALSA check on macOS). Add a check by writing one and listing it in CHECKS. Checks import
their libraries lazily, so a missing library is a reported result, never a crash of the doctor; an
unexpected exception inside a check is reported as that check's FAIL.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from engine.audio.quiet import no_jack_autostart, quiet_stderr

PROBE_CLIENT = "sideman-doctor"


class Status(str, Enum):
    OK = "OK"
    WARN = "WARN"  # works, with something missing that some feature needs
    FAIL = "FAIL"  # sideman cannot run as it is


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""
    lines: tuple[str, ...] = ()  # sub-items: one per API, model, preset, ...

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["lines"] = list(self.lines)
        return d


@dataclass(frozen=True)
class DoctorContext:
    root: Path  # where models/ and presets/ are
    soundfont: str | None = None


def default_root() -> Path:
    """The current directory if it looks like a sideman checkout, else the package's parent."""
    cwd = Path.cwd()
    if (cwd / "models").is_dir() or (cwd / "presets").is_dir():
        return cwd
    return Path(__file__).resolve().parent.parent


def _api_names() -> dict[int, str]:
    import rtmidi

    return {api: rtmidi.get_api_display_name(api) for api in rtmidi.get_compiled_api()}


# --- MIDI ----------------------------------------------------------------------------------------


def check_rtmidi(ctx: DoctorContext) -> CheckResult:
    try:
        import rtmidi
    except ImportError as exc:
        return CheckResult("MIDI library", Status.FAIL, f"python-rtmidi not importable: {exc}", "pip install python-rtmidi")
    apis = [name for api, name in _api_names().items() if api != rtmidi.API_RTMIDI_DUMMY]
    if not apis:
        return CheckResult(
            "MIDI library", Status.FAIL, "python-rtmidi has no MIDI API compiled in",
            "reinstall python-rtmidi with ALSA/JACK headers present (apt-get install libasound2-dev libjack-jackd2-dev)",
        )
    return CheckResult("MIDI library", Status.OK, f"python-rtmidi {rtmidi.__version__}, APIs: {', '.join(apis)}")


def check_alsa_sequencer(ctx: DoctorContext) -> CheckResult | None:
    if not sys.platform.startswith("linux"):
        return None
    seq = Path("/dev/snd/seq")
    if seq.exists() and os.access(seq, os.R_OK | os.W_OK):
        return CheckResult("ALSA sequencer", Status.OK, f"{seq} is there")
    why = "not readable and writable by you" if seq.exists() else "missing"
    return CheckResult(
        "ALSA sequencer", Status.WARN, f"{seq} {why}: no ALSA MIDI ports",
        "`sudo modprobe snd-seq` and join the audio group (`sudo usermod -aG audio $USER`), or use JACK",
    )


def jack_server_name() -> str:
    return os.environ.get("JACK_DEFAULT_SERVER") or "default"


def check_jack_server(ctx: DoctorContext) -> CheckResult | None:
    try:
        import rtmidi
    except ImportError:
        return None
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return None
    name = jack_server_name()
    try:
        with no_jack_autostart(), quiet_stderr():
            client = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=PROBE_CLIENT)
            ports = client.get_ports()
            client.delete()
    except rtmidi.RtMidiError as exc:
        return CheckResult(
            "JACK server", Status.WARN, f"no JACK server '{name}' running ({exc})",
            "start one: `jackd -d alsa` (with a sound card), `jackd -d dummy` (without), QjackCtl, "
            "or PipeWire's JACK (pw-jack); or set JACK_DEFAULT_SERVER to your server's name",
        )
    return CheckResult("JACK server", Status.OK, f"server '{name}' running ({len(ports)} MIDI ports readable)")


def _try_virtual_port(api: int) -> str | None:
    """Open and close a virtual output port on `api`; None when it works, else the error."""
    import rtmidi

    try:
        with no_jack_autostart(), quiet_stderr():
            out = rtmidi.MidiOut(api, name=PROBE_CLIENT)
            try:
                out.open_virtual_port(f"{PROBE_CLIENT}-probe")
                out.close_port()
            finally:
                out.delete()
    except (rtmidi.RtMidiError, NotImplementedError) as exc:
        return str(exc) or type(exc).__name__
    return None


def check_virtual_ports(ctx: DoctorContext) -> CheckResult:
    try:
        import rtmidi
    except ImportError:
        return CheckResult("virtual ports", Status.FAIL, "python-rtmidi not importable", "pip install python-rtmidi")
    lines, working = [], []
    for api, name in _api_names().items():
        if api == rtmidi.API_RTMIDI_DUMMY:
            continue
        error = _try_virtual_port(api)
        lines.append(f"{name}: {'OK' if error is None else 'fails: ' + error}")
        if error is None:
            working.append(name)
    if working:
        return CheckResult("virtual ports", Status.OK, f"can open virtual ports on {', '.join(working)}", "", tuple(lines))
    if sys.platform.startswith("win"):
        return CheckResult(
            "virtual ports", Status.WARN, "Windows has no virtual MIDI ports",
            "install loopMIDI (or use Windows MIDI Services loopback) and name its ports in the preset", tuple(lines),
        )
    return CheckResult(
        "virtual ports", Status.FAIL, "no MIDI API can open a virtual port: the daemon cannot create its ports",
        "start a JACK server (see above) or load the ALSA sequencer (`sudo modprobe snd-seq`)", tuple(lines),
    )


def check_midi_ports(ctx: DoctorContext) -> CheckResult:
    try:
        import rtmidi
    except ImportError:
        return CheckResult("MIDI ports", Status.FAIL, "python-rtmidi not importable", "pip install python-rtmidi")
    lines, total, reachable = [], 0, 0
    with no_jack_autostart():
        for api, name in _api_names().items():
            if api == rtmidi.API_RTMIDI_DUMMY:
                continue
            try:
                with quiet_stderr():
                    ins = rtmidi.MidiIn(api, name=PROBE_CLIENT)
                    outs = rtmidi.MidiOut(api, name=PROBE_CLIENT)
                    inputs, outputs = ins.get_ports(), outs.get_ports()
                    ins.delete(), outs.delete()
            except rtmidi.RtMidiError:
                continue
            reachable += 1
            mine = [p for p in inputs + outputs if PROBE_CLIENT in p]
            inputs = [p for p in inputs if p not in mine]
            outputs = [p for p in outputs if p not in mine]
            total += len(inputs) + len(outputs)
            lines.append(f"{name} inputs: {', '.join(inputs) or '(none)'}")
            lines.append(f"{name} outputs: {', '.join(outputs) or '(none)'}")
    if not reachable:
        return CheckResult("MIDI ports", Status.WARN, "no MIDI system reachable to list ports", "see the JACK and ALSA lines")
    if total == 0:
        return CheckResult(
            "MIDI ports", Status.WARN, "no MIDI ports found",
            "connect a keyboard or start your DAW; sideman's own virtual ports appear once `sideman run` is up",
            tuple(lines),
        )
    return CheckResult("MIDI ports", Status.OK, f"{total} ports found", "", tuple(lines))


# --- sound ---------------------------------------------------------------------------------------


def check_soundfont(ctx: DoctorContext) -> CheckResult:
    from engine.audio.soundfont import find_soundfont
    from engine.errors import AudioError

    try:
        path = find_soundfont(ctx.soundfont)
    except AudioError as exc:
        return CheckResult("SoundFont", Status.WARN, "none: the monitor and `sideman render` are off", str(exc))
    try:
        from engine.audio.soundfont import import_fluidsynth

        import_fluidsynth()
    except ImportError as exc:
        return CheckResult(
            "SoundFont", Status.WARN, f"{path}, but FluidSynth is not loadable ({exc})",
            "`apt-get install fluidsynth` (or `brew install fluid-synth`) and `pip install pyfluidsynth`",
        )
    return CheckResult("SoundFont", Status.OK, f"{path} ({path.stat().st_size / 1e6:.0f} MB), FluidSynth loadable")


def check_audio_output(ctx: DoctorContext) -> CheckResult:
    try:
        with no_jack_autostart(), quiet_stderr():
            import sounddevice as sd
    except OSError as exc:
        return CheckResult(
            "audio output", Status.WARN, f"PortAudio not loadable ({exc})", "`apt-get install libportaudio2`"
        )
    devices = [d for d in sd.query_devices() if d["max_output_channels"] > 0]
    if not devices:
        return CheckResult(
            "audio output", Status.WARN, "no audio output device: the monitor will be silent (`sideman render` works)",
            "connect a sound card or headphones, or listen through your DAW on sideman's MIDI output",
        )
    lines = tuple(f"{d['index']}: {d['name']} ({d['max_output_channels']} ch)" for d in devices)
    try:
        default = sd.query_devices(kind="output")["name"]
    except sd.PortAudioError:
        default = "none"
    return CheckResult("audio output", Status.OK, f"{len(devices)} devices, default: {default}", "", lines)


# --- models and presets --------------------------------------------------------------------------


def check_torch(ctx: DoctorContext) -> CheckResult:
    try:
        import torch
    except ImportError as exc:
        return CheckResult(
            "torch", Status.FAIL, f"not importable: {exc}", "pip install torch (see pytorch.org for the CUDA build)"
        )
    if torch.cuda.is_available():
        device = f"CUDA: {torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "Apple MPS"
    else:
        device = f"CPU ({torch.get_num_threads()} threads)"
    return CheckResult("torch", Status.OK, f"{torch.__version__}, device {device}")


def _card_summary(card: dict) -> str:
    scalars = [(k, v) for k, v in card.items() if isinstance(v, (str, int, float, bool))]
    return ", ".join(f"{k}={v}" for k, v in scalars[:5]) or "(no scalar fields)"


def check_models(ctx: DoctorContext) -> CheckResult:
    models = sorted((ctx.root / "models").glob("*.pt"))
    if not models:
        return CheckResult("models", Status.WARN, f"no model files in {ctx.root / 'models'}", "sideman train")
    lines, worst = [], Status.OK
    vocab_hash = None
    try:
        from engine.music.vocab import DEFAULT_VOCAB

        vocab_hash = DEFAULT_VOCAB.hash()
    except ImportError:
        pass
    for model in models:
        card_path = model.with_suffix(".card.json")
        size = f"{model.stat().st_size / 1e6:.1f} MB"
        if not card_path.is_file():
            lines.append(f"{model.name} ({size}): no card {card_path.name} -- re-export it with `sideman train`")
            worst = max(worst, Status.WARN, key=_rank)
            continue
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError) as exc:
            lines.append(f"{model.name}: card {card_path.name} unreadable ({exc}) -- re-export it with `sideman train`")
            worst = Status.FAIL
            continue
        if not isinstance(card, dict):
            lines.append(f"{model.name}: card {card_path.name} is not a JSON object -- re-export it")
            worst = Status.FAIL
            continue
        note = ""
        if vocab_hash and card.get("vocab_hash") and card["vocab_hash"] != vocab_hash:
            note = f" -- vocabulary {card['vocab_hash']} != this build's {vocab_hash}: retrain it"
            worst = Status.FAIL
        lines.append(f"{model.name} ({size}): {_card_summary(card)}{note}")
    detail = f"{len(models)} model files in {ctx.root / 'models'}"
    fix = "" if worst is Status.OK else "see the lines below"
    return CheckResult("models", worst, detail, fix, tuple(lines))


def check_presets(ctx: DoctorContext) -> CheckResult:
    presets = sorted((ctx.root / "presets").glob("*.toml"))
    if not presets:
        return CheckResult("presets", Status.WARN, f"no presets in {ctx.root / 'presets'}", "reinstall sideman or write one (see README)")
    try:
        from engine.presets import load_preset
    except ImportError as exc:
        return CheckResult(
            "presets", Status.FAIL, f"cannot check them: engine.presets not importable ({exc})",
            "reinstall sideman (`pip install -e .`)",
        )
    from engine.errors import SidemanError

    lines, bad = [], 0
    for path in presets:
        try:
            load_preset(path)
        except (SidemanError, OSError, ValueError) as exc:
            lines.append(f"{path.name}: {exc}")
            bad += 1
        else:
            lines.append(f"{path.name}: OK")
    if bad:
        return CheckResult(
            "presets", Status.FAIL, f"{bad} of {len(presets)} presets invalid",
            "fix the named fields (`sideman presets --check FILE`)", tuple(lines),
        )
    return CheckResult("presets", Status.OK, f"{len(presets)} presets valid", "", tuple(lines))


def _rank(status: Status) -> int:
    return (Status.OK, Status.WARN, Status.FAIL).index(status)


Check = Callable[[DoctorContext], "CheckResult | None"]

CHECKS: tuple[Check, ...] = (
    check_rtmidi,
    check_alsa_sequencer,
    check_jack_server,
    check_virtual_ports,
    check_midi_ports,
    check_soundfont,
    check_audio_output,
    check_torch,
    check_models,
    check_presets,
)


def run_checks(ctx: DoctorContext, checks: tuple[Check, ...] = CHECKS) -> list[CheckResult]:
    results = []
    for check in checks:
        try:
            result = check(ctx)
        except Exception as exc:  # noqa: BLE001 - the doctor reports a broken check, it does not die of it
            name = check.__name__.removeprefix("check_").replace("_", " ")
            result = CheckResult(name, Status.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                                 "please report this as a sideman bug")
        if result is not None:
            results.append(result)
    return results


def exit_code(results: list[CheckResult]) -> int:
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def format_text(results: list[CheckResult]) -> str:
    out = []
    for r in results:
        out.append(f"{r.status.value:<4}  {r.name:<15} {r.detail}")
        out.extend(f"{'':21}{line}" for line in r.lines)
        if r.fix and r.status is not Status.OK:
            out.append(f"{'':21}fix: {r.fix}")
    counts = {s: sum(r.status is s for r in results) for s in Status}
    out.append(f"\n{counts[Status.OK]} OK, {counts[Status.WARN]} WARN, {counts[Status.FAIL]} FAIL")
    return "\n".join(out)


def format_json(results: list[CheckResult]) -> str:
    counts = {s.value: sum(r.status is s for r in results) for s in Status}
    return json.dumps({"ok": exit_code(results) == 0, "counts": counts, "checks": [r.to_dict() for r in results]}, indent=2)
