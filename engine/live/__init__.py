"""Realtime: the daemon and its threads, the clock, the scheduler, phrase detection, MIDI ports, JACK,
and the modes (`engine.live.modes`). Never imports training code; the scheduler, the clock, phrase
detection and the MIDI layer never import torch."""
