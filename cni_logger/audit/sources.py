"""A trail's files, oldest first, streamed as bytes in bounded pieces (gzip inflated on the fly).

A *trail* is one configured ``logFile`` with its backups (``<file>.<sequence>.<UTC stamp>``, from
older releases ``<file>.<UTC stamp>[-N]``, and the same with ``.gz``: ``cni_logger.filesink`` names
them, and its naming functions are the ones used here to find them, to tell them from other files and
to order them: by sequence number, which follows write order whatever the clock did). Any file of a
trail stands for the whole trail: ``--log-file`` may name the live file, a backup, or a glob over
either; other files a glob matches (logrotate's ``.1``, ``.2.gz``) are trails of their own, and the
reader merges trails by time.

The trail keeps changing while it is read (the plugin rotates, compresses and prunes in other
processes), so:

* the live file is opened *first*, then the backups are listed; a backup that is the live file's
  inode (it was rotated meanwhile) is skipped, because the open descriptor reads it at the end;
* backups are listed again after the listed ones are read, so one rotated during the scan is read;
* a backup compressed between listing and opening is read from its ``.gz``; one pruned is skipped.

Every event that was in the trail when the scan started is read exactly once. (Not guaranteed: a
trail that rotates twice during one scan, whose first new backup is gzipped before it is listed.)

One read loop serves plain and compressed files alike (``chunks``); compression is detected from
the content (magic bytes), not the name, and gzip is inflated by ``Inflate``, a step without I/O that
the loop feeds: ``zlib`` in pieces of at most ``CHUNK`` bytes of output, whatever the ratio, with
concatenated gzip members read like ``gunzip`` reads them. ``cni_logger.audit.lines`` splits the
result into lines. The reader takes its pieces from ``pieces``, which runs that same loop in a forked
child for a big compressed file (``inflated_aside``), so that inflating overlaps the reader's work.
"""

from __future__ import annotations

import fcntl
import glob
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cni_logger.filesink import BACKUP_SUFFIX_GZ, backup_order, list_backups, live_path_of, parse_backup_name

CHUNK = 1 << 20
"""Bytes read (or inflated) at a time: large enough that per-call overhead vanishes, small for RSS."""
_GZIP_MAGIC = b"\x1f\x8b"
ASIDE_AT = 1 << 20
"""A compressed file at least this big on disk is inflated by a child process (``inflated_aside``)."""


@dataclass(frozen=True)
class Trail:
    """One live file path and, implicitly, its backups."""

    live: str


def resolve(patterns: list[str], warn: Callable[[str], None] | None = None) -> tuple[list[Trail], list[str]]:
    """The trails ``--log-file`` values name (globs expanded), in order, and a message per bad one.

    ``-`` is standard input, and it and any file whose content is an export of shipped events (Elasticsearch
    documents, a shipper's file output, ``kubectl logs``: ``exports``) are read first into temporary trails,
    one per host, which stand for them."""
    from cni_logger.audit import exports

    trails: list[Trail] = []
    problems: list[str] = []
    spooler = exports.Spool()
    named: list[tuple[str, str]] = []
    """("", a live path) or (a problem, ""), in the order the patterns name them."""
    for pattern in patterns:
        if pattern == "-":
            named += [("", p) for p in exports.spool("-", spooler, warn or problems.append)]
            continue
        matched = _expand(pattern)
        if not matched:
            named.append((f"{pattern}: no files match", ""))
        for path in matched:
            if exports.exported(path):
                named += [("", p) for p in exports.spool(path, spooler, warn or problems.append)]
            else:
                named.append(("", os.path.abspath(live_path_of(path))))
    for problem, live in named:
        if problem:
            problems.append(problem)
            continue
        trail = Trail(live)
        if trail in trails:
            continue
        problem = _unreadable(trail)
        if problem:
            problems.append(problem)
        else:
            trails.append(trail)
    return trails, problems


def live_paths(patterns: list[str]) -> tuple[list[str], list[str]]:
    """The live files ``--log-file`` values name, for ``follow``: a glob must match something now, a
    plain path need not exist yet (it is waited for); a message per bad one."""
    paths: list[str] = []
    problems: list[str] = []
    for live in _named_live_paths(patterns, problems):
        if os.path.isdir(live):
            problems.append(f"{live}: is a directory")
        elif live not in paths:
            paths.append(live)
    return paths, problems


def _named_live_paths(patterns: list[str], problems: list[str]) -> Iterator[str]:
    """The live file (absolute) of each path ``--log-file`` values name, globs expanded, in order; a glob
    that matches nothing is noted in ``problems``. A backup names its live file."""
    for pattern in patterns:
        matched = _expand(pattern)
        if not matched:
            problems.append(f"{pattern}: no files match")
        for path in matched:
            yield os.path.abspath(live_path_of(path))


def _expand(pattern: str) -> list[str]:
    """A glob's matches, sorted; any other pattern is a path of its own."""
    return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]


def _unreadable(trail: Trail) -> str:
    try:
        st = os.stat(trail.live)
    except FileNotFoundError:
        if backups(trail):
            return ""
        return f"{trail.live}: no such file (and no rotated backups of it)"
    except OSError as exc:
        return f"{trail.live}: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"{trail.live}: is a directory"
    if not stat.S_ISREG(st.st_mode):
        return f"{trail.live}: not a regular file"
    if not os.access(trail.live, os.R_OK):
        return f"{trail.live}: permission denied"
    return ""


def backups(trail: Trail) -> list[str]:
    """The trail's backup stems (without ``.gz``), oldest first."""
    return list_backups(trail.live)


def sequence_number(path: str) -> int:
    """The sequence number of a backup named ``<file>.<sequence>.<stamp>[.gz]``; 0 for any other file."""
    parsed = parse_backup_name(path)
    if parsed is None:
        return 0
    scheme, number, _, _ = backup_order(parsed[1])
    return number if scheme == 1 else 0


@dataclass
class OpenFile:
    """One file of a trail, open for reading."""

    path: str
    fd: int
    size: int

    def close(self) -> None:
        os.close(self.fd)


def _open_regular(path: str, warn: Callable[[str], None]) -> tuple[OpenFile, os.stat_result] | None:
    """Open ``path`` if it is (still) a regular file; ``None`` if it vanished or cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        warn(f"{path}: {exc.strerror}; file skipped")
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        warn(f"{path}: not a regular file; skipped")
        return None
    return OpenFile(path, fd, st.st_size), st


def trail_files(trail: Trail, warn: Callable[[str], None]) -> Iterator[OpenFile]:
    """The trail's files, opened one at a time, oldest first; the caller closes each one."""
    live = _open_regular(trail.live, warn)
    live_id = (live[1].st_dev, live[1].st_ino) if live else None
    seen: set[str] = set()
    try:
        while True:
            fresh = [stem for stem in backups(trail) if stem not in seen]  # in write order (filesink)
            if not fresh:
                break
            for stem in fresh:
                seen.add(stem)
                opened = _open_backup(stem, live_id, warn)
                if opened is not None:
                    yield opened
        if live is not None:
            handle, live = live[0], None
            yield handle
    finally:
        if live is not None:
            live[0].close()


def _open_backup(stem: str, live_id: tuple[int, int] | None, warn: Callable[[str], None]) -> OpenFile | None:
    for path in (stem, stem + BACKUP_SUFFIX_GZ):
        opened = _open_regular(path, warn)
        if opened is None:
            continue
        handle, st = opened
        if (st.st_dev, st.st_ino) == live_id:
            handle.close()  # rotated after the live file was opened: that descriptor reads it last
            return None
        return handle
    return None  # pruned meanwhile


def total_size(trails: list[Trail]) -> int:
    """Bytes on disk of every file of the trails (for progress: compressed files count as stored)."""
    total = 0
    for trail in trails:
        for path in [trail.live] + [v for s in backups(trail) for v in (s, s + BACKUP_SUFFIX_GZ)]:
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
    return total


def chunks(handle: OpenFile, advance: Callable[[int], None], warn: Callable[[str], None]) -> Iterator[bytes]:
    """The file's content in pieces of at most ``CHUNK`` bytes, inflated if it is gzip.

    ``advance`` is told how many bytes were read from disk; ``warn`` hears about unreadable files and
    damaged compressed data (what could be read or inflated before the damage is still yielded).
    """
    inflate: Inflate | None = None
    size = max(CHUNK, len(_GZIP_MAGIC))  # the first read must see the whole magic, whatever CHUNK is
    first = True
    while True:
        try:
            data = os.read(handle.fd, size)
        except OSError as exc:
            warn(f"{handle.path}: {exc.strerror}; {'file' if first else 'rest of the file'} skipped")
            return  # nor is a compressed stream cut short here flushed: the file is not at its end
        advance(len(data))
        if first:
            first, size = False, CHUNK
            if data.startswith(_GZIP_MAGIC):
                inflate = Inflate(lambda message: warn(f"{handle.path}: {message}"), handle.size)
        if inflate is None:
            if not data:
                return
            yield data
        elif not data:
            yield from inflate.finish()
            return
        else:
            yield from inflate.feed(data)
            if inflate.stopped:
                return


def pieces(handle: OpenFile, advance: Callable[[int], None], warn: Callable[[str], None]) -> Iterator[bytes]:
    """The file's content as ``chunks`` yields it; a compressed file of ``ASIDE_AT`` bytes or more is inflated
    by a child process meanwhile (``inflated_aside``)."""
    if handle.size >= ASIDE_AT and hasattr(os, "fork"):
        try:
            compressed = os.pread(handle.fd, len(_GZIP_MAGIC), 0) == _GZIP_MAGIC
        except OSError:
            compressed = False  # ``chunks`` meets the error again, and says so
        if compressed:
            return inflated_aside(handle, advance, warn)
    return chunks(handle, advance, warn)


_FRAME = struct.Struct("<BQ")
"""What ``inflated_aside``'s child writes: a kind and a length (of the bytes that follow, or the count)."""
_DATA, _ADVANCE, _WARN, _DONE, _FAILED = range(5)


def inflated_aside(handle: OpenFile, advance: Callable[[int], None], warn: Callable[[str], None]) -> Iterator[bytes]:
    """``chunks`` run in a forked child, its pieces read back through a pipe: inflating overlaps the caller's work.

    Inflating is about a tenth of a scan that reads every line, and it needs no Python state but the
    descriptor, so on a machine with a second core it need not be on the scan's path at all. The child
    runs the very same ``chunks`` (damage handling included) and writes *frames*: the pieces, and
    ``advance`` and ``warn`` calls in stream order, which are made here, between the pieces they came
    with, as ``chunks`` itself would make them (``reader`` places a damaged stretch by the lines consumed).
    The pipe holds about one piece, so the child is never far ahead and memory stays bounded. The child
    ends with the generator, however that ends (a closed pipe stops it); one that dies before its last
    frame is reported through ``warn``, like any other unreadable rest of a file. Where no child can be
    forked, the file is inflated here.
    """
    reading, writing = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(reading)
        os.close(writing)
        yield from chunks(handle, advance, warn)
        return
    if pid == 0:  # the child: never returns into the caller's code
        status = 1
        try:
            os.close(reading)
            _write_frames(handle, writing)
            status = 0
        finally:
            os._exit(status)
    os.close(writing)
    stream = os.fdopen(reading, "rb", buffering=1 << 16)
    try:
        while True:
            head = stream.read(_FRAME.size)
            kind, size = _FRAME.unpack(head) if len(head) == _FRAME.size else (-1, 0)
            if kind == _DATA:
                data = stream.read(size)
                if len(data) == size:
                    yield data
                    continue
            elif kind == _ADVANCE:
                advance(size)
                continue
            elif kind in (_WARN, _FAILED):
                message = stream.read(size).decode("utf-8", "replace")
                if kind == _WARN:
                    warn(message)
                    continue
                warn(f"{handle.path}: inflating failed ({message}); rest of the file skipped")
                return
            elif kind == _DONE:
                return
            warn(f"{handle.path}: the process inflating it ended early; rest of the file skipped")
            return
    finally:
        stream.close()  # a child still writing gets EPIPE and ends
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _write_frames(handle: OpenFile, fd: int) -> None:
    """The child of ``inflated_aside``: ``chunks`` as frames on ``fd``."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        try:
            fcntl.fcntl(fd, set_size, CHUNK)  # one piece per write, not sixteen
        except OSError:
            pass

    def send(kind: int, size: int, payload: bytes = b"") -> None:
        frame = memoryview(_FRAME.pack(kind, size) + payload)  # one copy of a piece: well under a millisecond per MiB
        while frame:
            frame = frame[os.write(fd, frame):]

    try:
        for piece in chunks(handle, lambda n: send(_ADVANCE, n), lambda m: _send_text(send, _WARN, m)):
            send(_DATA, len(piece), piece)
    except BrokenPipeError:
        raise  # the reader stopped reading: nothing to tell it
    except Exception as exc:
        _send_text(send, _FAILED, f"{type(exc).__name__}: {exc}")
        return
    send(_DONE, 0)


def _send_text(send: Callable[[int, int, bytes], None], kind: int, text: str) -> None:
    payload = text.encode("utf-8", "replace")
    send(kind, len(payload), payload)


class Inflate:
    """gzip to its content, fed a piece at a time and without I/O of its own.

    Output comes in pieces of at most ``CHUNK`` bytes. Damage is reported through ``warn`` and stops
    the stream (``stopped``): the caller reads no further. What inflated before the damage is kept,
    to the byte: zlib drops the whole output of a call that fails (a bad checksum in a member's
    trailer would cost up to ``CHUNK`` bytes of good events), so a failed call is replayed from a copy
    of the inflater taken before it, in ever smaller pieces, up to the point of damage.
    """

    def __init__(self, warn: Callable[[str], None], size: int | None = None) -> None:
        self._warn = warn
        self._size = size
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._in_member = False
        """Fed data whose member has not ended yet."""
        self._fed = 0
        """Compressed bytes fed before the current piece."""
        self._inflated = 0
        self.stopped = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        piece = len(data)
        while data:
            self._in_member = True
            before = self._inflater.copy()
            try:
                out = self._inflater.decompress(data, CHUNK)
            except zlib.error as exc:
                yield from self._salvage(before, data, piece, exc)
                return
            data = self._inflater.unconsumed_tail
            if out:
                self._inflated += len(out)
                yield out
            if self._inflater.eof:  # a member ended: another may follow (``cat a.gz b.gz`` is valid gzip)
                self._in_member = False
                data = self._inflater.unused_data
                if data and not _GZIP_MAGIC.startswith(data[:2]):
                    if data.strip(b"\0"):
                        self._warn("data after the end of the compressed stream ignored")
                    self.stopped = True
                    return
                self._fed += piece - len(data)
                piece = len(data)
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed += piece

    def _salvage(self, inflater: Any, data: bytes, piece: int, exc: zlib.error) -> Iterator[bytes]:
        """Replay the call that failed from ``inflater`` (its state before), keeping all output up to the
        damage: a piece that fails is tried again at half the size, down to one byte."""
        limit = CHUNK
        while limit:
            trial = inflater.copy()
            try:
                out = trial.decompress(data, limit)
            except zlib.error:
                limit //= 2
                continue
            if not out or trial.eof:
                break
            self._inflated += len(out)
            yield out
            inflater, data = trial, trial.unconsumed_tail
        self._damaged(exc, self._fed + piece - len(data))

    def finish(self) -> Iterator[bytes]:
        """At the end of the file: whatever zlib still holds; then, was the last member whole?"""
        try:
            tail = self._inflater.flush()
        except zlib.error as exc:
            self._damaged(exc, self._fed)
            return
        if tail:
            yield tail
        if self._in_member and not self._inflater.eof:
            self._warn("compressed data ends early (truncated file); read up to the cut")
        self.stopped = True

    def _damaged(self, exc: zlib.error, offset: int) -> None:
        rest = f"{self._size - offset} of {self._size}" if self._size is not None and self._size >= offset else "the"
        self._warn(f"damaged compressed data ({exc}) near compressed byte {offset}: the {self._inflated} bytes "
                   f"inflated before it are kept, the rest of the file ({rest} compressed bytes) is skipped")
        self.stopped = True
