"""Small real file systems for fault tests: a tmpfs of a given size (root only; skips otherwise)."""
import os
import subprocess

import pytest


def mount_tmpfs(directory, size="64k", options=""):
    """Mounts a tmpfs of `size` on `directory`; skips the test when mounting is not permitted."""
    os.makedirs(directory, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(directory)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")


def unmount(directory):
    subprocess.run(["umount", "-l", str(directory)], check=False)


def grow(directory, size):
    """What "free space" means in the messages: the same file system, now larger."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(directory)], check=True)
