"""`journalstate bench`: what each durability mode costs on this disk, next to floors and peers.

Belongs here: the benchmark cases (journalstate in every durability mode; the raw floors an mmap
store without sync, with one msync per commit, and pwrite + fdatasync; optional peers sqlite3,
LMDB and the rename idiom), the timing loop, the large-state, recovery, checkpoint and
dirty-page writeback measurements, a few probes of the kernel (MAP_SYNC, MS_ASYNC,
preallocation), and the table, JSON document and plot that report them.

Modules: ``base`` (states, settings, rows, the timing loop), ``compare`` (the comparison
table's cases), ``sizes`` (large state, checkpoints, recovery), ``system`` (writeback, probes,
the machine), ``report`` (targets, text, plot) and ``run`` (the command); ``commitmode`` and
``accel`` (the compiled paths against the pure ones, in one process) are commands of their
own. The command line imports this package only when ``journalstate bench`` runs; the library
never imports it.

Nothing here prints by itself: every line goes to the ``out`` stream :func:`run` is given, and
:func:`run` returns an exit code. lmdb and matplotlib are optional: imported only when used,
and their absence is reported in the output, never an error. Targets are evaluated and
reported, never asserted.
"""
