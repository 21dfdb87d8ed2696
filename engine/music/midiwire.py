"""MIDI wire protocol: a raw byte stream -> complete messages (running status, realtime, sysex).

Ports from python-rtmidi already deliver complete messages; this parser is for raw streams (a
serial/USB dump, a network bridge, a file's event bytes) and for checking odd input. It never
raises on bad bytes: a stray data byte or a message cut short is dropped and counted.
"""

from __future__ import annotations

from collections import Counter

# data bytes that follow each channel status (high nibble)
_CHANNEL_DATA_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
# data bytes that follow each system common status
_SYSTEM_DATA_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
SYSEX_START = 0xF0
SYSEX_END = 0xF7


class WireParser:
    """Feed bytes, get complete messages as tuples of ints, in order.

    - running status: data bytes after a channel message reuse its status;
    - realtime bytes (0xF8-0xFF) may appear anywhere, even inside another message, and come out at once;
    - system common messages cancel running status; sysex is collected up to 0xF7 and returned whole;
    - a data byte with no status, or a status that interrupts an unfinished message, is counted in `dropped`.
    """

    def __init__(self, max_sysex: int = 65536) -> None:
        self.max_sysex = max_sysex
        self.running: int | None = None
        self.current: list[int] = []
        self.needed = 0
        self.in_sysex = False
        self.dropped: Counter = Counter()

    def feed(self, data: bytes | bytearray | list[int]) -> list[tuple[int, ...]]:
        out: list[tuple[int, ...]] = []
        for b in data:
            b = int(b) & 0xFF
            if b >= 0xF8:  # realtime: passes through anything
                out.append((b,))
                continue
            if self.in_sysex:
                if b == SYSEX_END:
                    self.current.append(b)
                    out.append(tuple(self.current))
                    self._reset()
                elif b >= 0x80:  # a status byte ends a sysex without F7: drop the sysex
                    self.dropped["unterminated_sysex"] += 1
                    self._reset()
                    self._status(b, out)
                elif len(self.current) >= self.max_sysex:
                    self.dropped["sysex_too_long"] += 1
                    self._reset()
                else:
                    self.current.append(b)
                continue
            if b >= 0x80:
                self._status(b, out)
                continue
            # a data byte
            if not self.current:
                if self.running is None:
                    self.dropped["data_without_status"] += 1
                    continue
                self.current = [self.running]
                self.needed = _CHANNEL_DATA_LEN[self.running & 0xF0]
            self.current.append(b)
            self.needed -= 1
            if self.needed == 0:
                out.append(tuple(self.current))
                self.current = []
        return out

    def _status(self, b: int, out: list[tuple[int, ...]]) -> None:
        if self.current:
            self.dropped["incomplete_message"] += 1
            self.current = []
        if b == SYSEX_START:
            self.running = None
            self.in_sysex = True
            self.current = [b]
        elif b == SYSEX_END:
            self.dropped["stray_sysex_end"] += 1
        elif b >= 0xF0:
            self.running = None
            n = _SYSTEM_DATA_LEN.get(b)
            if n is None:  # undefined 0xF4/0xF5
                self.dropped["undefined_status"] += 1
            elif n == 0:
                out.append((b,))
            else:
                self.current = [b]
                self.needed = n
        else:
            self.running = b
            self.current = [b]
            self.needed = _CHANNEL_DATA_LEN[b & 0xF0]

    def _reset(self) -> None:
        self.current = []
        self.in_sysex = False
        self.needed = 0
