"""``cni-logger launcher``, ``install`` and ``uninstall``: put the logger into a node's CNI setup, and take it out.

Install writes the plugin launcher into the CNI bin dir (first: CRI-O skips a whole network whose
plugins are not all present), then appends ``{"type": "logger", ...}`` to the plugin list of the
network the runtime uses. Appended *last*, because on ADD the runtime runs the list in order, so the
logger receives the final result of every plugin before it as ``prevResult`` (and on DEL, run in
reverse, it records the teardown before anything is removed). ``--bracket`` also puts one first
(``"role": "attempt"``, the last one gets ``"role": "outcome"``), so ADDs that fail before reaching
the end are recorded too; rkt, which has no chains, is refused.

Which file is "the network the runtime uses" follows the runtimes' own rule: list ``*.conf``,
``*.conflist`` and ``*.json`` (Podman: only ``*.conflist``; rkt: only ``*.conf``), sort the names
lexicographically, take the first valid network config (rkt has no plugin lists: there the logger
gets a network file of its own). containerd stops loading *every* network at
the first file it cannot parse, where CRI-O and kubelet skip it; the installer skips such a file like
CRI-O but says loudly that containerd will not start pods while it is there. A file the installer
cannot rewrite without guessing (duplicate keys, which Go's decoder accepts silently, or a config the
logger itself could not run in) is refused: a broken conflist stops containerd from loading any
network, so nothing is written unless the result is certain to be valid.

Every write goes to a temporary name that no runtime loads (``.<name>.cni-logger-tmp``: it does not
end in ``.conf``, ``.conflist`` or ``.json``), is fsynced, takes the original's mode and owner, and is
renamed over the target; nothing is written when the content would not change (nor when it would
change only in key order: runtimes reload a rewritten file). What install changed is kept in a journal
(``<state dir>/install.json``, mode 0600: it holds the original file, which may contain credentials such
as Calico's token), so that uninstall restores the original byte for byte when nobody else changed the
file since, and otherwise removes only ``type: logger`` entries. Every change is written ahead in the
journal before any file is touched, and the next pass of any kind reconciles an interrupted one
(``transaction``): a full state dir changes nothing, and a crash at any step leaves the old state or the
new one, recorded, with no chain naming a launcher that is not there.

Before the entry goes into any chain, install executes the plugin as a runtime would (VERSION, and an
ADD through exactly the entries it writes, their log moved into a root-only scratch directory under the
state dir) and refuses, having changed nothing, when it does not run: an entry whose plugin fails would
fail every ADD of the network. A full scratch space is "cannot check", never "broken" (``selfcheck``). A new
launcher is executed under its temporary name and renamed into place only once it passed (``apply``'s
docstring says why this, not replace-then-restore).

One bin dir may serve several installs (state dirs): each registers its conf dirs beside the launcher, and
no uninstall removes the launcher while a config in a known conf dir still names it (``users``).

An operator's own logger entry is kept, with every setting (``redactKeys`` keeps secrets masked):
install moves it last and changes only what the command line names (``--max-size`` changes
``logOptions.maxSize``; without ``--log-file`` its ``logFile`` stays). The journal records it and its
position, so uninstall puts it back even into a file someone changed meanwhile.

``--watch`` keeps running for a DaemonSet: agents such as Calico rewrite their file on restart (and
non-atomically, so a parse error is retried before it is believed), so the entry is re-inserted
whenever it disappears; every pass repeats the self-check, and while it fails every logger entry of
every watched chain is taken out, the operator's own included (``failsafe``: pods keep starting,
unaudited) and put back exactly once the plugin runs again; SIGTERM removes the entry again but leaves
the launcher, which pods set up with the logger still need for DEL. Without ``--bracket`` or
``--no-bracket``, a chain keeps its bracket mode.

What lives where (one job per module; the order is the order of an install):

- ``cli``: the subcommands' parsers; imported for every ``cni-logger`` subcommand, so it loads the rest
  only when one of its commands runs.
- ``runtimes``: each runtime's rules (which files it loads, its default dirs, whether it chains
  plugins), the installer's names and defaults, and ``Options`` (one install's command line, resolved).
- ``configs``: reading the conf dir strictly, as Go's decoder and libcni read it.
- ``choose``: which file the runtime uses, and whether the logger could run in its network.
- ``content``: the logger's entry, and a config with and without it, rendered in the file's own style.
- ``plan``: what install or uninstall would write or remove (what ``--dry-run`` prints).
- ``journal``: the state dir: what install changed, and the lock that serialises installers.
- ``selfcheck``: executing the plugin as a runtime would, before it goes into a chain.
- ``transaction``: the intent written ahead of every change, and reconciling an interrupted one.
- ``apply``: carrying out a plan atomically under the lock; one install (checked) or uninstall pass, and
  the failsafe's withdrawal; each config change is told to an optional recorder (coverage events).
- ``failsafe``: which entries come out while the plugin fails its check, and putting them back.
- ``watch``: ``--watch``: re-insert the entry whenever it disappears; take it out while the plugin fails
  its self-check, and on SIGTERM.
- ``launcher``: the plugin executable a runtime runs (a ``/bin/sh`` preamble where ``#!`` cannot name the
  interpreter).
- ``users``: which installs and configs use a launcher (the registry beside it), so none is removed in use.
- ``atomicfile``: replacing a file all at once, or not at all.

Nothing on the plugin's path (the top level of ``cni_logger``) imports this package; ``cni_logger.cli``
names ``cni_logger.install.cli`` only as a string in ``COMMAND_MODULES``.
"""


class Refusal(Exception):
    """A config the installer will not touch, or a step that failed; the message says why and what to do."""
