"""`sideman accompany melody.mid -o out.mid`: the shipped accompaniment model sings the lower voices."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.commands.outputs import write_wav_and_png
from engine.errors import SidemanError

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "accompaniment.pt"
VOICE_ORDER = ("alto", "tenor", "bass")
log = logging.getLogger("sideman.accompany")


def add_arguments(parser) -> None:
    parser.add_argument("input", help="a MIDI file with the melody (every channel is yours)")
    parser.add_argument("-o", "--output", required=True,
                        help="the MIDI file to write: your melody on channel 1, the voices on channels 2, 3, 4")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TorchScript model (default: the shipped one)")
    parser.add_argument("--voices", type=int, default=3, choices=(1, 2, 3),
                        help="how many voices: 1 bass, 2 tenor and bass, 3 alto, tenor and bass (default)")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same voices")
    parser.add_argument("--style", default="bach", help="bach, palestrina, monteverdi, trecento or none")
    parser.add_argument("--key", default=None, help='keep the voices in a key, e.g. "G major"')
    parser.add_argument("--wav", default=None, help="also render the result to this WAV file (FluidSynth)")
    parser.add_argument("--png", default=None, help="also draw a piano roll of the result (a colour per voice)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args) -> int:
    from engine.model.modelfile import load_model
    from engine.model.sampler import SamplingConfig, parse_key
    from engine.model.session import ModelSession
    from engine.music.vocab import DEFAULT_VOCAB
    from engine.offline.accompaniment import AccompanySettings, accompany, melody_from_midi, write_midi

    try:
        voices = {1: (3,), 2: (2, 3), 3: (1, 2, 3)}[args.voices]
        settings = AccompanySettings(voices=voices, sampling=SamplingConfig(args.temperature, 0, args.top_p, args.seed),
                                     key_pitch_classes=parse_key(args.key) if args.key else None, style=args.style)
        DEFAULT_VOCAB.style(args.style)
    except ValueError as exc:
        raise SidemanError(str(exc)) from None
    melody = melody_from_midi(args.input, DEFAULT_VOCAB)
    loaded = load_model(args.model, DEFAULT_VOCAB)
    task = loaded.card.get("task", "CONTINUE")
    if task != "ACCOMPANY":
        raise SidemanError(f"{args.model}: {loaded.name} was trained for {task} streams, not ACCOMPANY; "
                           f"use an accompaniment model (the default, {DEFAULT_MODEL.name})")
    session = ModelSession(loaded, device=args.device)
    result = accompany(session, melody, settings, DEFAULT_VOCAB)
    write_midi(result, args.output)
    counts = {r: sum(1 for e in result.events if e.on and e.role == r) for r in voices}
    detail = ", ".join(f"{VOICE_ORDER[r - 1]} {n} notes (ch {r + 1})" for r, n in counts.items())
    print(f"wrote {args.output}: your melody (ch 1) and {detail} ({session.name}, {melody.bpm:.0f} BPM, "
          f"{melody.meter.numerator}/{melody.meter.denominator})")
    write_wav_and_png(args.output, args.wav, args.png, f"{Path(args.input).name} accompanied by {session.name}")
    return 0
