"""`sideman restyle in.mid --style NAME -o out.mid`: the melody played back in another style."""

from __future__ import annotations

from pathlib import Path

from engine.commands.continue_ import parse_count_or_any
from engine.commands.outputs import write_wav_and_png
from engine.errors import SidemanError

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "restyle.pt"


def add_arguments(parser) -> None:
    from engine.music.styles import STYLE_NAMES

    parser.add_argument("input", help="a MIDI file with the melody (every channel is yours; one line is read)")
    parser.add_argument("--style", required=True,
                        help=f"the target style: {', '.join(STYLE_NAMES)}; several, comma-separated (e.g. "
                             "chorale,fiddle), play one after the other on channels 2, 3, ...")
    parser.add_argument("-o", "--output", required=True,
                        help="the MIDI file to write: your melody on channel 1, then the restyled one on channel 2")
    parser.add_argument("--amount", type=float, default=1.0,
                        help="0 = your phrase's own style (it comes back as it was) .. 1 = the target style (default)")
    parser.add_argument("--keep", default="nothing", choices=("nothing", "rhythm", "pitches"),
                        help="keep your rhythm (the model picks the pitches) or your pitches (it picks the rhythm)")
    parser.add_argument("--guidance", type=float, default=1.5,
                        help="0 = the decoder alone .. 4: how hard each note is pushed from your phrase's own style "
                             "towards the target (default 1.5; each note costs two decode steps when > 0)")
    parser.add_argument("--register", default="12",
                        help="semitones the restyled line may go beyond your phrase's own range each side "
                             "(default 12: never more than an octave outside it; 7 keeps it closer), or any")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--candidates", type=int, default=16,
                        help="sample this many and keep the best by the style critics plus the similarity to yours "
                             "(default 16: target style ~0.70 against ~0.61 for one, chroma ~0.63 against ~0.46)")
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same result")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a restyle model (default: the shipped one)")
    parser.add_argument("--wav", default=None, help="also render the result to this WAV file (FluidSynth)")
    parser.add_argument("--png", default=None, help="also draw a piano roll: your melody, then the restyled one")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args) -> int:
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.sampler import SamplingConfig
    from engine.model.session import ModelSession
    from engine.music.vocab import DEFAULT_VOCAB
    from engine.offline.restyle import melody_from_midi, restyle_melody, write_midi

    styles = tuple(s.strip().lower() for s in args.style.split(",") if s.strip())
    try:
        settings = RestyleSettings(style=styles[0] if styles else "", amount=args.amount, keep=args.keep,
                                   guidance=args.guidance,
                                   register=parse_count_or_any(args.register, "--register", "a number of semitones"),
                                   sampling=SamplingConfig(args.temperature, 0, args.top_p, None),
                                   candidates=args.candidates)
        for style in styles:
            RestyleSettings(style=style)
    except ValueError as exc:
        raise SidemanError(str(exc)) from None
    source = melody_from_midi(args.input, DEFAULT_VOCAB)
    loaded = load_model(args.model, DEFAULT_VOCAB)
    session = ModelSession(loaded, device=args.device)
    result = restyle_melody(Restyler(session, DEFAULT_VOCAB), source, settings, seed=args.seed, styles=styles)
    write_midi(result, args.output, DEFAULT_VOCAB)
    m = source.melody
    detail = ", ".join(f"as {s} (ch {i + 2}, {len(x.notes)} notes)" for i, (s, x) in enumerate(result.results))
    print(f"wrote {args.output}: your melody (ch 1, {len(m.notes)} notes, {m.bars} bars), then {detail}; amount "
          f"{settings.amount:g}, keep {settings.keep}, guidance {settings.guidance:g}; {session.name}, {source.bpm:.0f} BPM, "
          f"{m.meter.numerator}/{m.meter.denominator}")
    write_wav_and_png(args.output, args.wav, args.png,
                      f"{Path(args.input).name} restyled as {', '.join(styles)} by {session.name}")
    return 0
