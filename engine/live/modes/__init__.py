"""The modes: each a file behind one interface (`base.Mode`), built by `build_mode` and by nothing else.

`BUILT` names the modes this build has; a preset naming another one is refused at load (the presets
module reads `BUILT` and `PLANNED` without importing any mode, so it stays free of torch).
"""

from __future__ import annotations

import importlib

# name -> the module that defines it (the module's class with `name == mode` is the mode)
BUILT: dict[str, str] = {
    "call_response": "engine.live.modes.call_response",
    "accompany": "engine.live.modes.accompany",
    "restyle": "engine.live.modes.restyle",
}
PLANNED: tuple[str, ...] = ()  # known names, not in this build yet: refused with their own message


def mode_class(name: str):
    """The class of mode `name` (imports its module)."""
    from engine.live.modes.base import Mode

    if name not in BUILT:
        raise KeyError(f"mode {name!r} is not in this build; this build has: {', '.join(BUILT)}")
    module = importlib.import_module(BUILT[name])
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Mode) and value is not Mode and value.name == name:
            return value
    raise KeyError(f"{BUILT[name]} defines no mode named {name!r}")


def build_mode(name: str, context, preset):
    """The mode `name` for a part, from its context (session, clock, scheduler, config) and the preset."""
    return mode_class(name)(context, preset)
