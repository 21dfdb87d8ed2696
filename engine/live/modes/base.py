"""The interface between the conductor and a mode.

The daemon runs one or more parts; each part is a mode with its own model session, its own output
channel and its own scheduler tag. The conductor tells every part the same things, on the conductor
thread, and each call returns at once (a mode hands the work to its model thread, a `ModelPart`):

    in   player(tick, data)    each of the player's messages as it arrives (clock ticks)
         poll(tick)            every few ms, after the messages waiting were handled: the mode's own
                               timing (call and response: phrase ends, answers starting and ending)
         cancel(tick)          end what it plays now, keep what was played (Stop, panic, preset switch)
         clock_jump(tick)      the clock jumped (MIDI Start, Song Position)
         configure(preset, c)  a new preset, or new sampling settings (CC)
         control(name, value)  a mapped CC meant for a mode; False if it is not this mode's
         stop() / restart()    end the part; a new model thread after its thread died
    out  events in the scheduler under the part's tag, so a cut ends exactly this part's notes

Phrase ends and cut-ins are not conductor events: what a phrase end means, and whether a note of the
player's cuts in, is the mode's own business (call and response answers a phrase and is cut by the next
one; an accompaniment has no phrase end and is never cut). Modes that need them use the shared phrase
detector (`engine.live.phrase`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

from engine.live.part import ModelPart, PartConfig


@dataclass(frozen=True)
class PartContext:
    """What the daemon gives a mode to build its part with."""

    name: str  # the part's name: its thread names and scheduler tags begin with it
    session: object  # engine.model.session.ModelSession, owned by the part's model thread
    vocab: object
    clock: object
    scheduler: object
    config: PartConfig
    prepare: bool = True  # generate likely output ahead while the player is silent
    supervisor: Callable[[str, BaseException], None] | None = None


class Mode(ABC):
    """One part of the session, as the conductor sees it (see the module docstring)."""

    name: ClassVar[str]
    task: ClassVar[str] = "CONTINUE"  # the task token of its streams: it needs a model trained for it

    def __init__(self, context: PartContext, preset) -> None:
        self.context = context
        self.config = context.config

    # -- lifecycle ---------------------------------------------------------------------------------

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self, timeout: float = 0.5) -> None: ...

    @abstractmethod
    def restart(self) -> None:
        """The model thread died (its notes are closed): start a new one on the same session."""

    @property
    @abstractmethod
    def thread(self) -> ModelPart:
        """The part's model thread."""

    def owns(self, thread_name: str) -> bool:
        return self.thread.name == thread_name

    # -- in ----------------------------------------------------------------------------------------

    @abstractmethod
    def player(self, tick: float, data: tuple) -> None: ...

    def poll(self, tick: float) -> None:
        pass

    @abstractmethod
    def cancel(self, tick: float) -> None: ...

    @abstractmethod
    def clock_jump(self, tick: float) -> None: ...

    @abstractmethod
    def configure(self, preset, config: PartConfig) -> None: ...

    def control(self, name: str, value) -> bool:
        return False

    def channels(self) -> list[int]:
        """The 0-based MIDI channels it plays on."""
        return [self.config.channel]

    # -- status ------------------------------------------------------------------------------------

    @abstractmethod
    def status(self) -> dict:
        """Counts for the status line: at least state, answers, cut_ins, ready_ms (a list)."""
