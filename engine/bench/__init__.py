"""Benchmarks: `decode` (engine.bench.decode: the model's per-token cost against its baselines) and
`live` (engine.bench.live: end-to-end timing over MIDI). Run them with `sideman bench decode|live`."""
