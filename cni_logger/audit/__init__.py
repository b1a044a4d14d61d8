"""Questions an auditor asks of the trail, answered from the live and rotated log files.

``cni-logger events | timeline | who-had | leaks | stats | follow`` read the JSON-lines file the
plugin writes, together with its rotated (and gzipped) backups, oldest first, in constant memory:

* ``sources``  finds a trail's files and streams their bytes (gzip through zlib, in bounded pieces);
* ``reader``   splits them into lines, merges several trails by time and classifies each line;
* ``record``   reads the identifying fields of an event line without decoding all of it;
* ``timeparse``, ``query``, ``intervals``, ``timeline``, ``stats``, ``follow``: the questions;
* ``output``   tables, JSON lines, progress and the Unix exit-status conventions;
* ``commands`` the argparse registration, imported by ``cni_logger.cli.tool`` only.

Nothing on the plugin's path imports this package: a runtime's ADD must not pay for an operator's
tools (``tests/audit/test_plugin_path.py`` guards this).
"""

DEFAULT_LOG_FILE = "/var/log/cni/cni-logger.log"
"""Where ``--log-file`` points unless told otherwise: the path the README's examples configure."""
