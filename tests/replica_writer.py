"""A replicating writer process for the replication kill test.

Run as ``python -m tests.replica_writer PATH URL`` from the repository's root. It opens the
store at PATH (creating it) with ``replicate_to=URL`` and a short interval, prints
``ready SEQ``, then commits :func:`tests.follow_writer.expected` of each next seq (a
burst, then a short pause, so the shipper both keeps up and falls behind) and prints
``shipped N`` each time ``store.replication.shipped_seq`` moved, until it is killed. The test
kills it with SIGKILL and checks a restore from the object store alone against these values.
"""

from __future__ import annotations

import random
import sys
import time

import journalstate as js
from tests.follow_writer import Live, expected


def main(path: str, url: str) -> None:
    """Commit and report the shipped seq until killed."""
    store = js.open(
        path,
        Live,
        durability="process",
        journal_size=1 << 18,
        replicate_to=url,
        replicate_interval=0.02,
    )
    out = sys.stdout
    out.write(f"ready {store.seq}\n")
    out.flush()
    rng = random.Random()
    reported = -1
    while True:
        for _ in range(rng.randrange(1, 200)):
            store.commit(expected(store.seq + 1))
        status = store.replication
        assert status is not None
        shipped = status.shipped_seq
        if shipped is not None and shipped != reported:
            reported = shipped
            out.write(f"shipped {shipped}\n")
            out.flush()
        time.sleep(rng.random() * 0.02)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
