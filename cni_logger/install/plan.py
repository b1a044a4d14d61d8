"""What install or uninstall would change, as steps: shown as a diff by ``--dry-run``, carried out by ``apply``.

Planning reads and never writes, so a pass with nothing to change (every ``--watch`` check, normally)
or a refusal touches nothing at all, not even the state dir.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import sys
from typing import Any

from cni_logger import jsonio
from cni_logger.install import Refusal, launcher, shim, users
from cni_logger.install.choose import check_runnable, conf_path, runtime_pick, settled_choice
from cni_logger.install.configs import ConfigFile, classify, order, read_config, scan
from cni_logger.install.content import (
    ChainEntry,
    bracket_entries,
    entry_problems,
    has_logger,
    logger_entries,
    merge_entry,
    render,
    with_logger,
    without_logger,
    wrap,
)
from cni_logger.install.journal import load_journal
from cni_logger.install.runtimes import (
    CILIUM_FILE,
    CILIUM_TYPE,
    DEFAULT_CNI_VERSION,
    LOGGER_TYPE,
    RKT_FILE,
    RKT_NETWORK,
    Options,
)
from cni_logger.install.selfcheck import CheckFailed


class Write:
    """Replace ``path`` (``old``: its content now, None if it does not exist) with ``data``.

    ``expect`` is the file as read: the write is abandoned if it changed since (another agent wrote it
    meanwhile). ``launcher``: the plugin executable (the launcher, or thick mode's shim), checked under its
    temporary name before it replaces the old one (``apply``).
    ``key``: the config path whose journal records this step carries out (default: ``path``; see
    ``transaction.commit``).
    """

    __slots__ = ("data", "expect", "gid", "key", "launcher", "mode", "old", "path", "uid")

    def __init__(self, path: str, data: bytes, old: bytes | None, mode: int, uid: int | None, gid: int | None,
                 expect: ConfigFile | None = None, *, launcher: bool = False, key: str | None = None) -> None:
        self.path, self.data, self.old, self.mode, self.uid, self.gid = path, data, old, mode, uid, gid
        self.expect, self.launcher, self.key = expect, launcher, key or path


class Remove:
    __slots__ = ("expect", "key", "launcher", "old", "path")

    def __init__(self, path: str, old: bytes, expect: ConfigFile | None = None, *, launcher: bool = False,
                 key: str | None = None) -> None:
        self.path, self.old, self.expect, self.launcher, self.key = path, old, expect, launcher, key or path


class Plan:
    """The steps in order, and the journal to save after them (None: leave it as it is).

    For an install, ``entries`` are the logger entries exactly as they are in the chain once the plan is
    carried out (or already are, when it changes nothing), each with its file, network name and
    ``cniVersion``: the operator's entry merged with the command line, and in bracket mode the attempt entry
    (first) and the outcome entry (last). The self-check executes each of them (``selfcheck.check``).
    ``network`` and ``cni_version`` are those of the (last) network the entry goes into.

    For an uninstall, ``kept_launcher`` lists the configs (file, network name) that still name the logger in the
    known conf dirs (``users``), for which the launcher the journal records was kept.
    """

    __slots__ = ("cni_version", "entries", "journal", "kept_launcher", "network", "steps")

    def __init__(self, journal: dict[str, Any] | None = None) -> None:
        self.steps: list[Write | Remove] = []
        self.journal = journal
        self.network = ""
        self.cni_version = DEFAULT_CNI_VERSION
        self.entries: list[ChainEntry] = []
        self.kept_launcher: list[tuple[str, str | None]] = []

    @property
    def writes_launcher(self) -> bool:
        return any(isinstance(step, Write) and step.launcher for step in self.steps)

    def diff(self) -> str:
        out: list[str] = []
        for step in self.steps:
            old = (step.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
            new = step.data.decode("utf-8", "replace").splitlines(keepends=True) if isinstance(step, Write) else []
            before = _shown(step.path) if step.old is not None else "/dev/null"
            after = _shown(step.path) if isinstance(step, Write) else "/dev/null"
            lines = list(difflib.unified_diff(old, new, before, after))
            out.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        return "".join(out)


def _shown(path: str) -> str:
    """A path as text stdout can carry: a name that is not UTF-8 (surrogate escapes) shows its bytes as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_document(a: Any, b: Any) -> bool:
    """Whether two parsed configs say the same to a runtime: equal values, in any key order (``1`` and ``1.0``
    and ``true`` differ, as they do in the file). Rewriting such a file would change only its key order, and
    make every runtime reload it: a second install of an unchanged chain writes nothing."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _executable(opts: Options) -> bytes:
    """What ``<bin dir>/logger`` must hold: the launcher, or in thick mode the shim configured for this agent."""
    paths = launcher.import_paths()
    if opts.agent_socket is None:
        return launcher.render(sys.executable, paths).encode("utf-8")
    binary = shim.read_binary(opts.shim)
    return shim.configure(binary, socket=opts.agent_socket, python=sys.executable,
                          program=launcher.program(paths, "cni_logger.thick"),
                          reply_ms=round(opts.agent_timeout * 1000))


def _launcher_plan(opts: Options) -> tuple[str, bytes | None]:
    """The plugin executable's path and its content when it must be (re)written, None when it is already current:
    the launcher, or thick mode's shim (``install.shim``)."""
    target = os.path.join(opts.bin_dir, LOGGER_TYPE)
    content = _executable(opts)
    try:
        with open(target, "rb") as f:
            current = f.read()
    except FileNotFoundError:
        return target, content
    if os.path.islink(target) or not launcher.is_launcher(current):
        # A failed check, not a refusal: every chain that names the logger executes this file, so the
        # failsafe (``--watch``) takes them out rather than leave them failing every ADD.
        raise CheckFailed(f"{target} exists and is not a cni-logger launcher (damaged, or another product's); "
                          "every chain that names the logger executes it: remove it or choose another --bin-dir")
    return target, (None if current == content and os.access(target, os.X_OK) else content)


def _record(journal: dict[str, Any], path: str, cfg: ConfigFile | None) -> dict[str, Any]:
    """The journal record for writing ``path`` whose current content is ``cfg`` (None: does not exist).

    The original is kept from an earlier install as long as the file is still exactly what we wrote; a
    file someone else rewrote becomes the new original, unless it still holds a logger entry after we
    had installed into it (then no one can tell which parts are ours, and uninstall only removes
    logger entries).
    """
    old = journal["configs"].get(path)
    if cfg is None:
        return {"created": True, "original": None, "converted_from": None}
    if old is not None and old.get("written_sha256") == _sha256(cfg.data):
        return dict(old)
    if old is not None and has_logger(cfg.doc):
        return {"created": False, "original": None, "converted_from": None}
    return {"created": False, "original": cfg.data.decode("utf-8"), "converted_from": None,
            "mode": cfg.stat.st_mode & 0o7777, "uid": cfg.stat.st_uid, "gid": cfg.stat.st_gid}


def _operator_entry(record: dict[str, Any] | None) -> tuple[dict[str, Any] | None, int | None]:
    """The operator's own logger entry recorded for a file, and its position in the plugin list.

    Journals of the previous version did not record it: it is then read from the recorded original
    (the file as it was before install), which is where it was taken from anyway.
    """
    if record is None:
        return None, None
    if "entry" in record:
        entry, index = record["entry"], record.get("entry_index")
        return (entry if isinstance(entry, dict) else None), (index if isinstance(index, int) else None)
    original = record.get("original")
    if not isinstance(original, str):
        return None, None
    try:
        doc = jsonio.loads(original, unique_keys=True)
    except (ValueError, RecursionError):
        return None, None
    return _entry_in(doc)


def _entry_in(doc: Any) -> tuple[dict[str, Any] | None, int | None]:
    """The one logger entry of a plugin list (or the logger network of a single config), and its index."""
    if not isinstance(doc, dict):
        return None, None
    plugins = doc.get("plugins")
    if isinstance(plugins, list):
        found = logger_entries(plugins)
        return (found[0][1], found[0][0]) if len(found) == 1 else (None, None)
    return (doc, None) if doc.get("type") == LOGGER_TYPE else (None, None)


def _note_entry_problems(path: str, entry: dict[str, Any], notes: list[str]) -> None:
    """The operator's settings are theirs to keep, but a value the plugin will ignore is worth saying."""
    for problem in entry_problems(entry):
        notes.append(f"warning: the logger entry for {path}: {problem}")


def plan_install(opts: Options, journal: dict[str, Any], notes: list[str]) -> Plan:
    """Everything install would change, in order: launcher first (CRI-O skips a network whose plugins are
    not all installed), then the config; the journal updated to match."""
    plan = Plan()
    new_journal = copy.deepcopy(journal)
    launcher_path, launcher_content = _launcher_plan(opts)
    if launcher_content is not None:
        plan.steps.append(Write(launcher_path, launcher_content, _read(launcher_path), 0o755,
                                os.geteuid(), os.getegid(), launcher=True))
    new_journal["launcher"] = launcher_path

    if opts.runtime.chaining:
        _plan_chain(opts, new_journal, plan, notes)
    elif opts.bracket:
        raise Refusal("--bracket needs a plugin chain, and rkt has none: each of its networks runs one plugin "
                      "alone, so there is no first and last entry to put the logger in")
    else:
        _plan_rkt(opts, new_journal, plan, notes)
    _plan_registry(opts, new_journal, plan)
    if plan.steps or new_journal != journal:
        plan.journal = new_journal
    return plan


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _plan_registry(opts: Options, journal: dict[str, Any], plan: Plan) -> None:
    """Register this install's conf dirs beside the launcher (``users``), after the launcher and before any
    config names it, so that another install's uninstall knows where to look before it removes the launcher."""
    installs = users.load(opts.bin_dir)
    dirs = sorted({os.path.dirname(p) for p in journal["configs"]} | {opts.conf_dir})
    installs[opts.state_dir] = dirs
    path = users.registry_path(opts.bin_dir)
    old, data = _read(path), users.render(installs)
    if old == data:
        return
    expect = read_config(path) if old is not None else None
    plan.steps.insert(1 if plan.writes_launcher else 0,
                      Write(path, data, old, 0o644, os.geteuid(), os.getegid(), expect))


def _bracket_problem(plugins: list[Any]) -> str:
    """Why an attempt entry before this chain's main plugin would make every ADD fail ("" when none is known).

    The attempt entry hands the main plugin a ``prevResult`` (its own empty result). The plugins known
    to fail on that (docs/install.md, "Bracket mode") are refused here, so that no pod on the node loses its
    network to an audit option.
    """
    main = next((p for p in plugins if isinstance(p, dict) and p.get("type") != LOGGER_TYPE), None)
    kind = main.get("type") if main is not None else None
    if kind == CILIUM_TYPE:
        return (f"{CILIUM_TYPE} is the main plugin, and it takes any prevResult to mean chaining mode: without one "
                "configured, every ADD fails (\"CNI PrevResult supplied, but not in chaining mode\")")
    if kind == "ipvlan" and main is not None and not main.get("master"):
        return ("ipvlan without \"master\" takes its master from the prevResult's one interface, and the attempt's "
                "result has none: every ADD fails (\"chained master failure\")")
    return ""


def _plan_chain(opts: Options, journal: dict[str, Any], plan: Plan, notes: list[str]) -> None:
    """Insert into the network the runtime uses; an operator's own logger entry there keeps its settings.

    Which entry is the operator's: the one recorded in the journal while the file is what install wrote
    (or was rewritten by an agent without any logger entry: its settings, e.g. ``redactKeys``, go on
    being applied), else the one in the file. Options given on the command line change only what they
    name (``Options.named``); a network without a logger entry gets ``Options.entry``.
    """
    target, files = settled_choice(opts, notes)
    doc = target.doc
    listed = doc if target.is_list else wrap(doc)
    version = check_runnable(target, listed)
    destination = target.path if target.is_list else os.path.splitext(target.path)[0] + ".conflist"
    previous = journal["configs"].get(destination)
    found = logger_entries(listed["plugins"])
    bracketed = len(found) == 2 and [p.get("role") for _, p in found] == ["attempt", "outcome"]
    bracket = opts.bracket
    if bracket is None:  # no option given: the chain keeps its mode (the one recorded, else the file's own)
        bracket = bool(previous["bracket"]) if previous is not None and "bracket" in previous else bracketed
    problem = _bracket_problem(listed["plugins"]) if bracket else ""
    if problem:
        raise Refusal(f"--bracket in {target.path}: {problem}; install with --no-bracket (the logger last only)")
    if target.name == CILIUM_FILE or any(p.get("type") == CILIUM_TYPE for p in listed["plugins"]):
        notes.append(f"warning: {target.path} is Cilium's: unless Cilium runs with cni.exclusive=false "
                     "(Helm value), it rewrites the file and removes the logger entry")
    existing = None
    if not target.is_list and os.path.lexists(destination):
        if not previous or previous.get("converted_from") != target.path:
            raise Refusal(f"{target.path} would become {destination}, which exists already; "
                          "resolve which one is meant (or name one with --conf-file)")
        existing = read_config(destination)
    plan.network, plan.cni_version = target.network or "", version
    if len(found) > 1 and not bracketed:
        raise Refusal(f"{target.path} has {len(found)} logger entries; install keeps the settings of an "
                      "existing entry and cannot tell which one is meant: remove all but one")
    found = found[-1:]  # a bracketed pair's settings are its outcome entry's (the attempt entry is a copy)
    ours = previous is not None and target.is_list and previous.get("written_sha256") == _sha256(target.data)
    if previous is not None:
        operator, index = _operator_entry(previous)
    else:
        operator, index = (found[0][1], found[0][0]) if found else (None, None)
    base = found[0][1] if found and not ours else operator
    entry = opts.entry if base is None else merge_entry(base, opts.named)
    entry = {k: v for k, v in entry.items() if k != "role"}  # the placement decides each entry's role
    if base is not None:
        _note_entry_problems(destination, entry, notes)
    first, entry = bracket_entries(entry) if bracket else (None, entry)
    plan.entries = [ChainEntry(destination, plan.network, version, e) for e in (first, entry) if e is not None]
    new_doc = with_logger(listed, entry, first)
    new = render(new_doc, target.data)
    if target.is_list:
        if new == target.data or same_document(new_doc, target.doc):
            return
        record = _record(journal, target.path, target)
        plan.steps.append(Write(target.path, new, target.data, target.stat.st_mode & 0o7777, target.stat.st_uid,
                                target.stat.st_gid, target))
    else:
        record = {"created": False, "converted_from": target.path, "original": target.data.decode("utf-8"),
                  "mode": target.stat.st_mode & 0o7777, "uid": target.stat.st_uid, "gid": target.stat.st_gid}
        notes.append(f"{target.path} is a single-plugin config: it becomes the plugin list {destination}")
        plan.steps.append(Write(destination, new, existing.data if existing else None, record["mode"],
                                record["uid"], record["gid"], existing))
        plan.steps.append(Remove(target.path, target.data, target, key=destination))
    record["written_sha256"] = _sha256(new)
    record["entry"], record["entry_index"] = operator, index
    record["bracket"] = bracket  # a logger entry first and last, or last only
    journal["configs"][destination] = record
    _check_pick(opts, files, plan, {target.path: destination})


def _check_pick(opts: Options, files: list[ConfigFile], plan: Plan, renamed: dict[str, str]) -> None:
    """Refuse a plan after which the runtime would use another network (or, containerd, none at all).

    Renaming ``NAME.conf`` (or ``NAME.json``) to ``NAME.conflist`` moves it in the runtime's order:
    ``NAME.conf.json`` sorts between the two names, and ``NAME.json`` moves before ``NAME.d.conflist``.
    So the runtime's own rule (``choose.runtime_pick``) is run over the directory as it would be after
    the plan, and must pick the same file as before, under its new name if it is the one renamed.
    """
    runtime = opts.runtime
    touched = {step.path for step in plan.steps}
    after = [c for c in files if c.path not in touched]
    for step in plan.steps:
        if (isinstance(step, Write) and not step.launcher and os.path.dirname(step.path) == opts.conf_dir
                and step.path.endswith(runtime.extensions)):
            after.append(classify(step.path, step.data, step.expect.stat if step.expect else files[0].stat))
    after.sort(key=lambda c: order(c.name))
    for network in (None, opts.network) if opts.network else (None,):
        before, now = runtime_pick(runtime, files, network), runtime_pick(runtime, after, network)
        expected = renamed.get(before.path, before.path) if before is not None else None
        if (now.path if now is not None else None) == expected:
            continue
        change = ", ".join(f"{os.path.basename(old)} into {os.path.basename(new)}" for old, new in renamed.items())
        if now is None:
            consequence = "no network at all"
        elif now.problem and not now.ambiguous:
            consequence = (f"{now.path}, which sorts first then and which it cannot load ({now.problem}): "
                           "it would then load no network at all")
        else:
            consequence = f"{now.path} (network {now.network!r}), which sorts first then"
        raise Refusal(f"turning {change} would make {runtime.name} use {consequence}, instead of "
                      f"{before.path if before is not None else 'the network it uses now'}; rename or remove one "
                      "of them (or convert the file yourself): nothing was changed")


def _plan_rkt(opts: Options, journal: dict[str, Any], plan: Plan, notes: list[str]) -> None:
    """rkt has no plugin lists: each .conf is a separate network. The logger gets one of its own."""
    if opts.network:
        raise Refusal("--network does not apply to rkt: the logger's network is always "
                      f"{RKT_NETWORK!r} (use --conf-file to name its file)")
    path = conf_path(opts, opts.conf_file or RKT_FILE)
    if not path.endswith(".conf"):
        raise Refusal(f"{path}: rkt loads only .conf files")
    current: ConfigFile | None = None
    for cfg in scan(opts.conf_dir, opts.runtime) if os.path.isdir(opts.conf_dir) else []:
        if cfg.path == path:
            current = cfg
        elif cfg.unparsable or cfg.ambiguous:
            notes.append(f"warning: {cfg.path} {cfg.problem}: rkt refuses to set up any network while it is there")
        elif cfg.network == RKT_NETWORK:
            raise Refusal(f"{cfg.path} already defines network {RKT_NETWORK!r}; remove it or install into it "
                          "with --conf-file")
    if current is None and os.path.lexists(path):
        current = read_config(path)
    if current is not None and (current.problem or current.doc.get("type") != LOGGER_TYPE):
        raise Refusal(f"{path} exists and is not a logger network ({current.problem or 'another type'})")
    # As for a chain: an operator's own logger network keeps its settings (see _plan_chain).
    previous = journal["configs"].get(path)
    ours = previous is not None and current is not None and previous.get("written_sha256") == _sha256(current.data)
    operator = _operator_entry(previous)[0] if previous is not None else (current.doc if current else None)
    base = current.doc if current is not None and not ours else operator
    if base is None:
        network = {"cniVersion": DEFAULT_CNI_VERSION, "name": RKT_NETWORK, **opts.entry}
    else:
        network = merge_entry(base, {**opts.named, "name": RKT_NETWORK})
        network = {"cniVersion": network.get("cniVersion") or DEFAULT_CNI_VERSION, **network}
        _note_entry_problems(path, network, notes)
    plan.network, plan.cni_version = RKT_NETWORK, network["cniVersion"]
    plan.entries = [ChainEntry(path, RKT_NETWORK, plan.cni_version, network)]
    new = render(network, current.data if current else None)
    if current is not None and (new == current.data or same_document(network, current.doc)):
        return
    record = _record(journal, path, current)
    record["written_sha256"] = _sha256(new)
    record["entry"], record["entry_index"] = operator, None
    journal["configs"][path] = record
    mode, uid, gid = (current.stat.st_mode & 0o7777, current.stat.st_uid, current.stat.st_gid) if current else (
        0o644, os.geteuid(), os.getegid())
    plan.steps.append(Write(path, new, current.data if current else None, mode, uid, gid, current))
    notes.append(f"rkt: the logger is network {RKT_NETWORK!r} in {path}; pods use it with "
                 f"--net=default,{RKT_NETWORK} (or --net=all)")


def plan_uninstall(state_dir: str, keep_launcher: bool, notes: list[str], keep_withdrawn: bool = False) -> Plan:
    """Undo what the journal records, touching only what install added (see the package docstring).

    A file the failsafe took the logger out of (``journal["withdrawn"]``) is undone from the content it had
    before; ``keep_withdrawn`` (``--watch`` on SIGTERM while the plugin fails) leaves such files as they
    are, with their records: the entries the failsafe took out run a broken plugin.
    """
    journal = load_journal(state_dir)
    new_journal = copy.deepcopy(journal)
    plan = Plan(journal=new_journal)
    withdrawn: dict[str, Any] = journal.get("withdrawn") or {}
    for path, record in journal["configs"].items():
        if path in withdrawn and keep_withdrawn:
            continue
        _plan_restore(path, record, plan, notes, withdrawn.get(path))
        del new_journal["configs"][path]
    if not keep_withdrawn:
        from cni_logger.install.failsafe import restore_steps

        for path, taken in withdrawn.items():
            if path not in journal["configs"]:
                # An operator's own entries: put back. They execute the launcher, so _plan_launcher_removal
                # (which judges each file as the plan leaves it) keeps it.
                restore_steps(path, taken, plan, notes)
        new_journal.pop("withdrawn", None)
    launcher_path = journal.get("launcher")
    if launcher_path and not keep_launcher:
        _plan_launcher_removal(state_dir, journal, launcher_path, plan, notes)
        new_journal["launcher"] = None
    return plan


def _plan_launcher_removal(state_dir: str, journal: dict[str, Any], launcher_path: str, plan: Plan,
                           notes: list[str]) -> None:
    """Remove the launcher unless a config in the known conf dirs still names it (``users``), whatever state dir
    recorded that config; either way take this state dir out of the registry beside it."""
    bin_dir = os.path.dirname(launcher_path)
    installs = users.load(bin_dir)
    data = _read(launcher_path)
    if data is not None and launcher.is_launcher(data) and not os.path.islink(launcher_path):
        planned = {step.path: (step.data if isinstance(step, Write) else None) for step in plan.steps}
        own = [os.path.dirname(path) for path in journal["configs"]]
        plan.kept_launcher = users.configs_naming(users.known_conf_dirs(bin_dir, own, installs), planned)
        if plan.kept_launcher:
            named = "; ".join(f"{path}{f' (network {name!r})' if name else ''}" for path, name in plan.kept_launcher)
            notes.append(f"kept {launcher_path}: the logger is still named by {named}, and a runtime runs it from "
                         "this bin dir: removing it would fail every ADD and DEL there. This install's own entries "
                         "are out; the launcher goes with the uninstall that leaves no config naming it (keep the "
                         "environment its first lines name until then)")
        else:
            plan.steps.append(Remove(launcher_path, data, launcher=True))
    elif data is not None:
        notes.append(f"warning: {launcher_path} is not a cni-logger launcher any more: left in place")
    if state_dir in installs:
        del installs[state_dir]
        path = users.registry_path(bin_dir)
        old = _read(path)
        if old is not None and installs:
            plan.steps.append(Write(path, users.render(installs), old, 0o644, os.geteuid(), os.getegid(),
                                    read_config(path)))
        elif old is not None:
            plan.steps.append(Remove(path, old, read_config(path)))


def _plan_restore(path: str, record: dict[str, Any], plan: Plan, notes: list[str],
                  withdrawn: dict[str, Any] | None = None) -> None:
    """The steps that undo install in ``path``; ``withdrawn``: what the failsafe took out of it, if it did
    (the file is then judged by the content it had before, as long as nobody wrote it since)."""
    try:
        actual = read_config(path)
    except FileNotFoundError:
        actual = None
    current = actual
    if withdrawn is not None and (_sha256(actual.data) if actual else None) == withdrawn.get("written_sha256"):
        before = withdrawn["original"].encode("utf-8", "surrogateescape")
        current = classify(path, before, actual.stat if actual else os.stat(os.path.dirname(path) or "."))
    if current is None or (actual is None and withdrawn is None):
        notes.append(f"{path} no longer exists: nothing to undo there")
        return
    unchanged = _sha256(current.data) == record.get("written_sha256")
    if record.get("created"):
        if actual is None:
            return  # the failsafe took the logger network out: nothing left to remove
        if current.doc and isinstance(current.doc, dict) and current.doc.get("type") == LOGGER_TYPE:
            plan.steps.append(Remove(path, actual.data, actual))
        else:
            notes.append(f"warning: {path} is no longer the logger network install wrote: left in place")
        return
    original = record.get("original")
    if unchanged and original is not None:
        data = original.encode("utf-8")
        mode, uid, gid = record.get("mode", 0o644), record.get("uid"), record.get("gid")
        source = record.get("converted_from")
        if source:
            if os.path.lexists(source):
                notes.append(f"{source} was written again by someone else: removing only {path}")
            else:
                plan.steps.append(Write(source, data, None, mode, uid, gid, key=path))
            if actual is not None:
                plan.steps.append(Remove(path, actual.data, actual))
        elif actual is None or data != actual.data:
            plan.steps.append(Write(path, data, actual.data if actual else None, mode, uid, gid, actual))
        return
    # Changed by someone else since: take out only logger entries, and put the operator's own back.
    if current.problem or not current.is_list:
        notes.append(f"warning: {path} {current.problem or 'is no longer a plugin list'}: left as it is")
        return
    operator, index = _operator_entry(record)
    new_doc = without_logger(current.doc, operator, index)
    if new_doc == current.doc and current is actual:
        return
    if not new_doc["plugins"]:
        notes.append(f"warning: {path} would have no plugins left without the logger: left as it is")
        return
    new = render(new_doc, current.data)
    if actual is not None and new == actual.data:
        return
    mode = current.stat.st_mode & 0o7777
    plan.steps.append(Write(path, new, actual.data if actual else None, mode, current.stat.st_uid,
                            current.stat.st_gid, actual))
