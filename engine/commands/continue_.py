"""`sideman continue phrase.mid -o out.mid`: the shipped model answers a phrase, offline."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.commands.outputs import write_wav_and_png
from engine.errors import SidemanError

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "continuation.pt"
log = logging.getLogger("sideman.continue")


def add_arguments(parser) -> None:
    parser.add_argument("input", help="a MIDI file with the phrase to answer (every channel is yours)")
    parser.add_argument("-o", "--output", required=True, help="the MIDI file to write: your phrase, then the answer")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TorchScript model (default: the shipped one)")
    parser.add_argument("--bars", type=int, default=2, help="length of the answer in bars (default 2)")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same answer")
    parser.add_argument("--style", default="none", help="bach, essen, oneill, ryan, aird, palestrina or none")
    parser.add_argument("--key", default=None, help='keep the answer in a key, e.g. "D minor"')
    parser.add_argument("--low", type=int, default=0, help="lowest pitch the answer may play")
    parser.add_argument("--high", type=int, default=127, help="highest pitch the answer may play")
    parser.add_argument("--extra-voices", default="1", metavar="N|any",
                        help="the answer at most N voices thicker than your phrase (default 1: a tune gets a "
                             "one- or two-voice answer); any: as thick as the model likes")
    parser.add_argument("--longest-note-bars", default="1", metavar="N|any",
                        help="hold no answer note longer than N bars or the phrase's longest note, whichever is "
                             "longer (default 1); any: as long as the model likes")
    parser.add_argument("--wav", default=None, help="also render the result to this WAV file (FluidSynth)")
    parser.add_argument("--png", default=None, help="also draw a piano roll of the result")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def parse_count_or_any(text: str, flag: str, what: str) -> int | None:
    """`--extra-voices 1`, `--longest-note-bars any`: a whole number, or None for "any"."""
    if str(text).strip().lower() == "any":
        return None
    try:
        return int(text)
    except ValueError:
        raise SidemanError(f"{flag} takes {what} or any, not {text!r}") from None


def run(args) -> int:
    from engine.offline.continuation import ContinueSettings, continue_prompt, prompt_from_midi, write_midi
    from engine.model.modelfile import load_model
    from engine.model.sampler import Constraints, SamplingConfig
    from engine.model.session import ModelSession
    from engine.music.vocab import DEFAULT_VOCAB

    try:
        sampling = SamplingConfig(args.temperature, args.top_k, args.top_p, args.seed)
        constraints = Constraints.parse(args.key, args.low, args.high)
        settings = ContinueSettings(
            args.bars, sampling, constraints,
            extra_voices=parse_count_or_any(args.extra_voices, "--extra-voices", "a number of voices 0..16"),
            longest_note_bars=parse_count_or_any(args.longest_note_bars, "--longest-note-bars", "a number of bars 1..64"))
        DEFAULT_VOCAB.style(args.style)
    except ValueError as exc:
        raise SidemanError(str(exc)) from None
    prompt = prompt_from_midi(args.input, DEFAULT_VOCAB, args.style)
    session = ModelSession(load_model(args.model, DEFAULT_VOCAB), device=args.device)
    result = continue_prompt(session, prompt, settings, DEFAULT_VOCAB)
    write_midi(result, args.output)
    n_answer = sum(1 for e in result.events if e.on and e.role == 1)
    print(f"wrote {args.output}: your phrase and a {args.bars}-bar answer of {n_answer} notes "
          f"({session.name}, {prompt.bpm:.0f} BPM, {prompt.meter.numerator}/{prompt.meter.denominator})")
    write_wav_and_png(args.output, args.wav, args.png, f"{Path(args.input).name} answered by {session.name}")
    return 0
