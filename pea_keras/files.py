"""Safe file writes: a reader sees the old file or the new one, never half of one.

Every file pea_keras writes goes through here, so that an interrupted or failed write
(a full disk, a killed process) leaves the previous complete file in place, and new files
get the permissions the user's umask allows (as `open` would give them).
"""

import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, data):
    """Writes bytes `data` to `path` through a temporary file in the same folder, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
