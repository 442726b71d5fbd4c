"""Safe file writes: a reader sees the old file or the new one, never half of one.

Every file pea_keras writes goes through here, so that an interrupted or failed write
(a full disk, a killed process) leaves the previous complete file in place, and new files
get the permissions the user's umask allows (as `open` would give them).

A write writes a hidden temporary next to its target (`.NAME.pea-tmp-XXXX.EXT`, same folder,
hence same file system), fsyncs it and renames it over the target; on failure the temporary
is removed. A process killed between the two leaves only the temporary, which
`remove_stale_temporaries` sweeps on the next run. Errors name the target, not the temporary.
Only regular files are replaced (through a symlink: its target, the link stays); a device, FIFO,
socket or folder is refused (`write_target`). `lock`: one process at a time owns an output.

`storage_problem` and `write_error_message` turn what a full, read-only or forbidden disk
raises (an OSError, or a TensorFlow OpError whose text carries the OS message) into one line
for the user: what failed, which path, what is still safe and what to do.

Test hook: the environment variable PEA_KERAS_FAULT (comma-separated) makes writers SIGKILL
their own process at a chosen moment, to prove that a kill at the worst time costs nothing:
  kill_during_write:NAME        an atomic write of a file named NAME, half its bytes written
  kill_during_checkpoint:EPOCH  the checkpoint of EPOCH, its files written but not committed
  kill_after_checkpoint:EPOCH   just after the checkpoint of EPOCH was committed
Writers call `fault_point(kind, value)`; it does nothing unless the variable names that point.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import tempfile

from pea_keras.errors import UsageError, UserError, first_line

FAULT_ENV = "PEA_KERAS_FAULT"
_TMP_MARK = ".pea-tmp-"
_TMP_RE = re.compile(r"^\..+" + re.escape(_TMP_MARK) + r"[A-Za-z0-9_]+(\.[A-Za-z0-9]+)?$")
_LOCK_MARK = ".pea-lock"  # Never a temporary's name: `remove_stale_temporaries` leaves locks alone.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))

# What a user can do about each storage errno (the caller adds what to run afterwards).
_FIXES = {
    errno.ENOSPC: "free space",
    errno.EDQUOT: "free space or raise your disk quota",
    errno.EFBIG: "use a file system that allows larger files",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "make {dir} writable",
    errno.EPERM: "make {dir} writable",
}
# The OS message of each, as TensorFlow embeds it in OpError text (e.g. "...; No space left on device").
_TEXTS = {code: os.strerror(code) for code in _FIXES}


class StorageError(UserError):
    """The disk refused a write (full, read-only, forbidden); the message is one line naming the
    path, what is intact and what to do (`write_error_message`)."""


class NotRegularFileError(StorageError):
    """A device node, FIFO, socket or folder where a file is written: refused even with --overwrite."""


class BusyError(UsageError):
    """Another process owns the output (`lock`); the message names the way out."""


def write_target(path, directory=False):
    """Where a write to `path` lands: `path`, or the file its symlinks lead to (its content is replaced, the link
    stays); NotRegularFileError for anything there but a regular file (or, with `directory`, a folder)."""
    real = os.path.realpath(path)
    mode = os.stat(real).st_mode if os.path.exists(real) else stat.S_IFREG
    if stat.S_ISREG(mode) or (directory and stat.S_ISDIR(mode)):
        return real
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    where = f"{shown(real)} (where the link {shown(path)} leads)" if os.path.islink(path) else shown(path)
    raise NotRegularFileError(f"{where} is {kind}, not a regular file: refusing to replace it, even with "
                              "--overwrite; choose another path")


@contextlib.contextmanager
def lock(path, fix, folder=False):
    """`with lock(path, "choose another -o"):` this process owns `path` (an output file or, with `folder`, a
    folder; existing or not) until the block ends; while another process owns it, BusyError at once:
    "PATH is in use by another process: wait for it to finish, or FIX". fcntl.flock on `.NAME.pea-lock`
    beside a file, `.pea-lock` in a folder (removed on release, as are folders it created if empty); the
    kernel drops a dead process's lock; a file system without locks runs unlocked."""
    head, tail = os.path.split(os.path.realpath(path))
    lock_path = os.path.join(head, tail, _LOCK_MARK) if folder else os.path.join(head, f".{tail}{_LOCK_MARK}")
    up, created = os.path.dirname(lock_path), []  # Deepest first.
    while not os.path.isdir(up):
        created, up = [*created, up], os.path.dirname(up)
    try:
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        fd = _acquire(lock_path, path, fix)
    except OSError as e:  # A read-only or forbidden folder: one line, as for any write.
        raise StorageError(write_error_message(e, lock_path, safe="nothing was written") or first_line(e)) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # Before closing: whoever opened it meanwhile then retries.
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):  # Deepest first; kept unless empty.
            for folder in created:
                os.rmdir(folder)


def _acquire(lock_path, path, fix):
    """The descriptor holding the lock at `lock_path` (None where locks are not supported)."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if isinstance(e, BlockingIOError):
                raise BusyError(f"{shown(path)} is in use by another process: wait for it to finish, or {fix}") from e
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):  # Else a file system that cannot lock.
                raise
            return None
        with contextlib.suppress(FileNotFoundError):  # Its last owner may have removed it meanwhile.
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                return fd  # The file stays empty: it takes no room on a full disk.
        os.close(fd)


def _umask():
    os.umask(mask := os.umask(0))
    return mask


def _temporary(path):
    """A new empty temporary file next to `path`, with its extension (some writers check it)."""
    name = os.path.basename(path)
    return tempfile.mkstemp(prefix="." + name + _TMP_MARK, suffix=os.path.splitext(name)[1],
                            dir=os.path.dirname(os.path.abspath(path)))


def _naming(path, error):
    """`error` as an OSError of the same errno that names the target `path`, not a temporary."""
    if isinstance(error, OSError) and error.errno is not None:
        return OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))
    return error


def _commit(tmp, path, exclusive=False):
    """Rename `tmp` to `path`; `exclusive`: only if `path` does not exist (FileExistsError if
    another writer created it meanwhile), so two writers never both believe they wrote it."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600.
    if not exclusive:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # Atomic and exclusive where the file system has hard links.
    except FileExistsError:
        raise
    except OSError:  # No hard links here: reserve the name exclusively, then fill it.
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _discard(tmp):
    with contextlib.suppress(OSError):
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp)
        else:
            os.unlink(tmp)


def atomic_write(path, data):
    """Writes bytes `data` to `path` through a temporary file in the same folder, fsync, rename."""
    with atomic_output(path) as f:
        half = len(data) // 2
        f.write(data[:half])
        f.flush()
        fault_point("kill_during_write", os.path.basename(path))  # A kill mid-write, for tests.
        f.write(data[half:])


def atomic_write_many(contents, exclusive=False):
    """Writes {path: bytes} all or nothing: every temporary is written and fsynced before the
    first rename, so a full disk or a bad path changes none of the files (files that belong
    together, such as a .tflite and its C array, never disagree after a failure).

    `exclusive`: none of the paths may exist; if another writer creates one meanwhile, the files
    this call already committed are removed again and FileExistsError names the path."""
    targets = {path: write_target(path) for path in contents}  # Refuse a device or FIFO before writing.
    staged, committed = [], []
    try:
        for path, data in contents.items():
            try:
                fd, tmp = _temporary(targets[path])
                staged.append((tmp, path))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise _naming(path, e) from e
        for tmp, path in staged:
            fault_point("kill_during_write", os.path.basename(path))
            try:
                _commit(tmp, write_target(path), exclusive)
                committed.append(targets[path])
            except OSError as e:
                if exclusive and isinstance(e, FileExistsError):
                    for done in committed:
                        with contextlib.suppress(OSError):
                            os.unlink(done)
                raise _naming(path, e) from e
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                _discard(tmp)


def atomic_write_text(path, text):
    """`atomic_write` of `text` encoded as UTF-8."""
    atomic_write(path, text.encode("utf-8"))


def atomic_write_json(path, obj, *, indent=1, default=None):
    """`obj` as JSON (with a final newline), written atomically; `default` as for json.dumps."""
    atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")


@contextlib.contextmanager
def atomic_output(path, mode="wb", newline=None):
    """`with atomic_output(path) as f:` a file object whose content replaces `path` only when the
    block ends without an exception (for writers that stream: csv, matplotlib's savefig)."""
    with atomic_path(path) as tmp:
        text = "b" not in mode
        with open(tmp, mode.replace("w", "x"), encoding="utf-8" if text else None, newline=newline) as f:
            yield f


@contextlib.contextmanager
def atomic_path(path):
    """`with atomic_path(path) as tmp:` for writers that want a file name (`model.save(tmp)`):
    `tmp` is a fresh path in the same folder with the same extension; when the block ends without
    an exception, what the writer left at `tmp` replaces `path`, else it is removed."""
    tmp = None
    try:
        fd, tmp = _temporary(write_target(path, directory=True))
        os.close(fd)
        os.unlink(tmp)  # The writer creates it (some refuse to overwrite).
        yield tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(errno.ENOENT, "the writer wrote nothing", os.fspath(path))
        if os.path.isfile(tmp):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        fault_point("kill_during_write", os.path.basename(path))
        target = write_target(path, directory=os.path.isdir(tmp))  # A folder replaces only a folder.
        if os.path.isdir(tmp) and os.path.isdir(target):
            _replace_directory(tmp, target)
        else:
            _commit(tmp, target)
    except BaseException as e:
        if tmp:
            _discard(tmp)
        if isinstance(e, OSError):
            raise _naming(path, e) from e
        raise


def _replace_directory(new, path):
    """Directories cannot be renamed over each other: the old one steps aside first, so at any
    moment one complete copy exists under `path` or under its hidden `.old` name."""
    old = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + _TMP_MARK + "old")
    _discard(old)
    os.rename(path, old)
    os.rename(new, path)
    _discard(old)


def atomic_copy(source, path):
    """Copies file `source` to `path` atomically (the copy appears whole or not at all)."""
    with open(source, "rb") as src, atomic_output(path) as dst:
        shutil.copyfileobj(src, dst)


def is_temporary(name):
    """True for the hidden temporaries the writers here create (left behind only by a kill)."""
    return bool(_TMP_RE.match(os.path.basename(name)))


def remove_stale_temporaries(directory, recursive=False):
    """Removes temporaries left in `directory` by killed writes; returns what was removed.
    Call it only where no other process writes at the same time (the start of a run)."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for root, dirs, names in os.walk(directory):
        for name in names + dirs:
            if is_temporary(name):
                _discard(os.path.join(root, name))
                removed.append(os.path.join(root, name))
        if not recursive:
            break
        dirs[:] = [d for d in dirs if not is_temporary(d)]
    return removed


def storage_problem(error):
    """(errno, OS message) when `error` says the disk refused a write (full, quota, read-only,
    permission, file too large), else None. Reads OSError.errno, or the OS message inside the text
    of other errors (TensorFlow raises OpErrors such as ResourceExhaustedError for these)."""
    if isinstance(error, OSError) and error.errno in _FIXES:
        return error.errno, os.strerror(error.errno)
    if isinstance(error, OSError) and error.errno is not None:
        return None
    text = str(getattr(error, "message", None) or error)
    for code, message in _TEXTS.items():
        if message in text:
            return code, message
    return None


def missing(path):
    """Why `path` cannot be read, as the OS says it ("no such file or directory", "too many levels
    of symbolic links", "permission denied"), or None when it is there."""
    try:
        os.stat(path)
    except OSError as e:
        return (e.strerror or type(e).__name__).lower()
    return None


def shown(path):
    """`path` relative to the working directory when it lies below it (as the user typed it)."""
    path = os.fspath(path)
    if not os.path.isabs(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def error_path(error):
    """The file an OSError names, else the first path-like token of a TensorFlow error's text."""
    if isinstance(error, OSError) and error.filename:
        return os.fspath(error.filename)
    text = re.sub(r"\{\{.*?\}\}", "", str(getattr(error, "message", None) or error))  # TF op names.
    match = re.search(r"(?:^|[\s'\"}])(/[^\s;'\"]+|[\w.-]+/[^\s;'\"]+)", text)
    return match.group(1) if match else None


def what_failed(error, path=None):
    """"No space left on device writing PATH" for a storage `error` (None for anything else)."""
    problem = storage_problem(error)
    if problem is None:
        return None
    target = path or error_path(error)
    return problem[1] + (f" writing {shown(target)}" if target else "")


def write_error_message(error, path=None, safe=None, retry="run again"):
    """One line for a storage failure, or None when `error` is something else (a bug: let it show).

    `path` overrides the path found in the error; `safe` says what is intact ("the last complete
    checkpoint, epoch 7, is intact"); `retry` what to run once fixed. For example:
    "No space left on device writing runs/x/metrics.json; the last complete checkpoint, epoch 7,
    is intact: free space and run again with --resume".
    """
    line = what_failed(error, path)
    if line is None:
        return None
    target = path or error_path(error)
    directory = shown(os.path.dirname(os.path.abspath(target))) if target else "the folder"
    fix = _FIXES[storage_problem(error)[0]].format(dir=directory)
    if safe:
        line += f"; {safe}"
    return f"{line}: {fix} and {retry}" if retry else f"{line}: {fix}"


def as_os_error(error, path=None):
    """`error` as an OSError with the right errno naming `path` when it is a storage problem
    (so callers handle TensorFlow's and Python's the same way), else None."""
    problem = storage_problem(error)
    if problem is None:
        return None
    target = path or error_path(error)
    return OSError(problem[0], problem[1], target) if target else OSError(*problem)


def fault_point(kind, value):
    """Test hook: SIGKILLs this process when PEA_KERAS_FAULT lists `kind:value` (`kind:value@TERM`:
    SIGTERM; see the module docstring); a no-op otherwise. Never set the variable outside tests."""
    for point in os.environ.get(FAULT_ENV, "").split(","):
        name, _, sig = point.strip().partition("@")  # kill_after_checkpoint:1@TERM sends SIGTERM.
        if name == f"{kind}:{value}":
            os.kill(os.getpid(), getattr(signal, f"SIG{sig or 'KILL'}"))
