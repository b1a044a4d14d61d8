"""Questions an auditor asks of the trail, answered from the live and rotated log files.

``cni-logger events | timeline | who-had | leaks | stats | follow`` read the JSON-lines file the
plugin writes, together with its rotated (and gzipped) backups, oldest first, in constant memory:

* ``sources``  finds a trail's files and streams their bytes (gzip through zlib, in bounded pieces);
* ``lines``    splits bytes into lines, with a cap on a line's length (for ``reader`` and ``follow``);
* ``reader``   merges several trails' lines by time and classifies each line;
* ``record``   reads the identifying fields of an event line without decoding all of it;
* ``evidence``, ``coverage``: what the trail cannot vouch for (damage, gaps) and its own account of its
  coverage (outages, dropped events, inventories: ``docs/coverage-events.md``);
* ``timeparse``, ``query``, ``intervals``, ``timeline``, ``stats``, ``follow``: the questions;
* ``output``   tables, JSON lines, progress and the Unix exit-status conventions;
* ``commands`` the argparse registration, imported by ``cni_logger.cli.tool`` only.

Nothing on the plugin's path imports this package: a runtime's ADD must not pay for an operator's
tools (``tests/system/test_rooms.py`` guards this).
"""

TIME_HELP = ("ISO-8601 (2026-11-28T02:20:15Z, an offset, or a date), HH:MM[:SS] today, epoch seconds as the CSV "
             "prints them (1764989100.25), or relative (-5min, 30m, 2h, 7d, 1h ago: that long ago; now, today, "
             "yesterday); without an offset a time is UTC, and stderr says which instant was taken")
"""The times ``timeparse`` accepts, in a few words: for ``--help`` and for its own error messages. Here,
not in ``timeparse``, because ``commands`` needs it while registering and must not import the parser."""

FORMATS = ("table", "json", "csv", "tsv")
"""``--format`` choices (``formats`` writes them); here because ``commands`` registers them without importing it."""
