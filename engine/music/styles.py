"""The styles a phrase can be restyled into, and the corpus collections each is learned from.

A style is what a listener names: a chorale line, a German folksong, a fiddle tune, a Renaissance line, a
medieval (Trecento) line. Each is one or more corpus collections (the vocabulary's STYLE_<collection>
tokens stay per collection; the restyle model is conditioned on these five). `python -m engine.music.styles`
prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import SidemanError


@dataclass(frozen=True)
class Style:
    name: str
    title: str
    collections: tuple[str, ...]
    # the bar lengths its lines are written in, as the meter most common at each length, most common first:
    # every length held by at least 4 % of 2,000 phrases of the train split (the model reads bar lengths, the
    # BAR tokens' spacing, not meter names). `engine.music.barring` bars a phrase for a style with them
    meters: tuple[tuple[int, int], ...]


STYLES: tuple[Style, ...] = (
    Style("chorale", "chorale (Bach, the soprano)", ("bach",), ((4, 4), (3, 4))),
    Style("folksong", "German folksong (Essen)", ("essen",), ((2, 4), (3, 4), (4, 4), (3, 8))),
    Style("fiddle", "Irish / Scottish fiddle tune (O'Neill, Ryan, Aird)", ("oneill", "ryan", "aird"),
          ((6, 8), (2, 2), (2, 4))),
    Style("renaissance", "Renaissance line (Palestrina, Monteverdi: the top voice)", ("palestrina", "monteverdi"),
          ((4, 2), (4, 4), (3, 2))),
    Style("medieval", "medieval line (Trecento: the top voice)", ("trecento",), ((6, 8), (2, 4), (9, 8), (2, 2))),
)
STYLE_NAMES: tuple[str, ...] = tuple(s.name for s in STYLES)
COLLECTION_STYLE: dict[str, str] = {c: s.name for s in STYLES for c in s.collections}


def style_index(name: str) -> int:
    """The style's index (its place in the condition vector); a clear error naming the choices."""
    key = name.strip().lower()
    if key not in STYLE_NAMES:
        raise SidemanError(f"unknown style {name!r}; choose one of {', '.join(STYLE_NAMES)}")
    return STYLE_NAMES.index(key)


def style_of_collection(collection: str) -> str | None:
    return COLLECTION_STYLE.get(collection)


def all_collections() -> tuple[str, ...]:
    return tuple(c for s in STYLES for c in s.collections)


def main() -> None:
    for i, s in enumerate(STYLES):
        meters = " ".join(f"{n}/{d}" for n, d in s.meters)
        print(f"{i}  {s.name:<12} {s.title}  [{', '.join(s.collections)}]  {meters}")


if __name__ == "__main__":
    main()
