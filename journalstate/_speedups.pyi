# The compiled module's interface (journalstate/_speedups.c); see journalstate/_accel.py.
from collections.abc import Callable, Sequence

from journalstate._checksums import Buffer

hardware_crc: int

def crc32c(data: Buffer | memoryview, value: int = 0, /) -> int: ...
def build_record(
    epoch: int,
    seq: int,
    position: int,
    durable_seq: int,
    generation: int,
    patches: list[tuple[int, bytes]],
    /,
) -> tuple[bytes, int]: ...
def dirty_chunks(
    logged: Sequence[list[tuple[int, bytes]]], state_size: int, chunk: int, /
) -> list[int]: ...
def replay_run(
    ring: Buffer,
    journal_size: int,
    image: bytearray,
    epoch: int,
    position: int,
    seq: int,
    end: int,
    state_size: int,
    max_length: int,
    generation: int,
    chunk: int,
    /,
) -> tuple[int, int, bool]: ...

class FlatDiff:
    cls: type
    fallback: Callable[[object, object], list[tuple[int, bytes]]]
    def __init__(
        self,
        cls: type,
        fields: Sequence[tuple[str, int, int, int, int, int]],
        fallback: Callable[[object, object], list[tuple[int, bytes]]],
    ) -> None: ...
    def __call__(self, old: object, new: object, /) -> list[tuple[int, bytes]]: ...
