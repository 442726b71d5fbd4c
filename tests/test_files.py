"""pea_keras.files on real failing disks: /dev/full, a small tmpfs, a read-only tmpfs, a
folder the process may not write, and a process killed in the middle of a write.

Mounting needs root (as in CI); elsewhere those tests skip and say why.
"""
import errno
import json
import os
import subprocess
import sys

import pytest
from disk import mount_tmpfs, unmount
from fresh import run, start

from pea_keras import files


@pytest.fixture
def small_disk(tmp_path):
    """A 64 kB file system, so that a 100 kB write runs out of space."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "64k")
    yield disk
    unmount(disk)


@pytest.fixture
def read_only_disk(tmp_path):
    disk = tmp_path / "ro"
    mount_tmpfs(disk, "64k")
    (disk / "old.json").write_text('{"old": true}\n')
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    yield disk
    unmount(disk)


BIG = os.urandom(100 * 1024)


def stream(path, data):
    with files.atomic_output(path) as f:
        for i in range(0, len(data), 4096):
            f.write(data[i:i + 4096])


def save_like_a_library(path, data):
    with files.atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == os.path.dirname(os.path.realpath(path))  # Beside the target.
        assert tmp.endswith(os.path.splitext(str(path))[1]) and files.is_temporary(tmp)
        with open(tmp, "wb") as f:
            f.write(data)


WRITERS = {"atomic_write": files.atomic_write, "atomic_output": stream, "atomic_path": save_like_a_library}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_full_disk_keeps_the_previous_file_and_names_the_target(small_disk, writer):
    target = small_disk / "model.keras"
    target.write_bytes(b"previous complete model")
    with pytest.raises(OSError) as raised:
        WRITERS[writer](target, BIG)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(target)  # Never the temporary's name.
    assert target.read_bytes() == b"previous complete model"
    assert sorted(os.listdir(small_disk)) == ["model.keras"]  # No temporary left behind.
    assert files.write_error_message(raised.value, safe="the previous model.keras is intact") == (
        f"No space left on device writing {target}; the previous model.keras is intact: "
        "free space and run again")


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writes_that_fit_replace_the_file_whole(small_disk, writer):
    target = small_disk / "x.bin"
    target.write_bytes(b"old")
    WRITERS[writer](target, b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert os.listdir(small_disk) == ["x.bin"]


def test_files_written_together_change_together(small_disk):
    old = {"m.tflite": b"old model", "model_data.cc": b"// old", "model_data.h": b"// old"}
    for name, data in old.items():
        (small_disk / name).write_bytes(data)
    new = {small_disk / "m.tflite": b"new" * 1000, small_disk / "model_data.cc": BIG,
           small_disk / "model_data.h": b"// new"}
    with pytest.raises(OSError) as raised:
        files.atomic_write_many(new)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(small_disk / "model_data.cc")
    assert {name: (small_disk / name).read_bytes() for name in old} == old
    assert sorted(os.listdir(small_disk)) == sorted(old)
    new[small_disk / "model_data.cc"] = b"// new array"
    files.atomic_write_many(new)
    assert {p: p.read_bytes() for p in new} == new and sorted(os.listdir(small_disk)) == sorted(old)


def test_exclusive_writes_never_replace_what_another_writer_created(tmp_path):
    """Two writers racing for one name without --overwrite: the second is told, and leaves nothing."""
    first = {tmp_path / "m.tflite": b"first", tmp_path / "m_model_data.cc": b"// first"}
    files.atomic_write_many(first, exclusive=True)
    second = {tmp_path / "other.h": b"// second", tmp_path / "m.tflite": b"second"}
    with pytest.raises(FileExistsError) as raised:
        files.atomic_write_many(second, exclusive=True)
    assert raised.value.filename == str(tmp_path / "m.tflite")
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "m_model_data.cc"]  # other.h was taken back.
    assert (tmp_path / "m.tflite").read_bytes() == b"first"


def test_full_disk_on_a_new_file_leaves_nothing(small_disk):
    with pytest.raises(OSError) as raised:
        files.atomic_write_json(small_disk / "metrics.json", {"x": "y" * 100_000})
    assert raised.value.errno == errno.ENOSPC
    assert os.listdir(small_disk) == []


def test_dev_full_errors_become_one_line():
    with pytest.raises(OSError) as raised, open("/dev/full", "wb") as f:
        f.write(b"x")
        f.flush()
    assert files.storage_problem(raised.value) == (errno.ENOSPC, "No space left on device")
    message = files.write_error_message(raised.value, path="runs/x/metrics.json",
                                        safe="the last complete checkpoint, epoch 7, is intact",
                                        retry="run again with --resume")
    assert message == ("No space left on device writing runs/x/metrics.json; the last complete "
                       "checkpoint, epoch 7, is intact: free space and run again with --resume")
    assert "\n" not in message


@pytest.mark.parametrize("writer", ["json", "many"])
def test_read_only_disk(read_only_disk, writer):
    target = read_only_disk / "old.json"
    with pytest.raises(OSError) as raised:
        if writer == "json":
            files.atomic_write_json(target, {"new": True})
        else:
            files.atomic_write_many({target: b"{}", read_only_disk / "new.h": b"//"})
    assert raised.value.errno == errno.EROFS and raised.value.filename == str(target)
    assert json.loads(target.read_text()) == {"old": True}
    assert files.write_error_message(raised.value) == (
        f"Read-only file system writing {target}: the file system is read-only; choose a writable "
        "location and run again")


def test_permission_denied_names_the_folder_to_fix(tmp_path):
    """A real EACCES: a child process that gave up root writes into a folder owned by root."""
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o755)
    (folder / "a.json").write_text("{}")
    os.chmod(tmp_path, 0o755)
    if os.getuid() != 0:
        pytest.skip("needs root to drop to another user")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # The child: no pytest, no TensorFlow; report and leave.
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                files.atomic_write_json(folder / "a.json", {"b": 1})
                report = "written"
            except OSError as e:
                report = json.dumps([e.errno, e.filename, files.write_error_message(e)])
            os.write(write, report.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        report = f.read()
    os.waitpid(pid, 0)
    code, filename, message = json.loads(report)
    assert code == errno.EACCES and filename == str(folder / "a.json")
    assert message == (f"Permission denied writing {folder / 'a.json'}: make {folder} writable "
                       "and run again")
    assert (folder / "a.json").read_text() == "{}"


def test_tensorflow_errors_are_recognised_by_their_text():
    """TensorFlow reports a full disk as ResourceExhaustedError whose text carries the OS message
    (this is the text of a real failed checkpoint on a full tmpfs)."""

    class ResourceExhaustedError(Exception):
        def __init__(self, message):
            super().__init__(message)
            self.message = message

    error = ResourceExhaustedError(
        "{{function_node __wrapped__SaveV2_dtypes_3_device_/job:localhost/replica:0/task:0/device:"
        "CPU:0}} m/ckpt-3_temp/part-00000-of-00001.data-00000-of-00001.tempstate1604; No space left "
        "on device [Op:SaveV2]")
    assert files.storage_problem(error) == (errno.ENOSPC, "No space left on device")
    assert files.error_path(error) == "m/ckpt-3_temp/part-00000-of-00001.data-00000-of-00001.tempstate1604"
    assert files.write_error_message(error, path="m/ckpt-3", retry="run again with --resume") == (
        "No space left on device writing m/ckpt-3: free space and run again with --resume")
    converted = files.as_os_error(error, "m/ckpt-3")
    assert isinstance(converted, OSError) and converted.errno == errno.ENOSPC
    assert converted.filename == "m/ckpt-3"


@pytest.mark.parametrize("error", [ValueError("No such thing"), FileNotFoundError(2, "missing", "x"),
                                   RuntimeError("graph error"), IsADirectoryError(21, "dir", "x")])
def test_other_errors_are_not_storage_problems(error):
    assert files.storage_problem(error) is None
    assert files.write_error_message(error) is None and files.as_os_error(error) is None


def test_new_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        files.atomic_write_text(tmp_path / "a.txt", "x")
        stream(tmp_path / "b.bin", b"y")
        files.atomic_copy(tmp_path / "a.txt", tmp_path / "c.txt")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.bin", "c.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    assert (tmp_path / "c.txt").read_text() == "x"


def test_json_and_text_round_trip(tmp_path):
    files.atomic_write_json(tmp_path / "m.json", {"a": [1, 2.5], "b": "é"})
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8")) == {"a": [1, 2.5], "b": "é"}
    assert (tmp_path / "m.json").read_text().endswith("}\n")


def test_a_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "saved_model"
    target.mkdir()
    (target / "old.pb").write_text("old")
    with files.atomic_path(target) as tmp:
        os.mkdir(tmp)
        with open(os.path.join(tmp, "new.pb"), "w") as f:
            f.write("new")
    assert os.listdir(target) == ["new.pb"] and os.listdir(tmp_path) == ["saved_model"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old plot")
    with pytest.raises(RuntimeError), files.atomic_output(target) as f:
        f.write(b"half a plot")
        raise RuntimeError("the plotting library failed")
    assert target.read_bytes() == b"old plot" and os.listdir(tmp_path) == ["plot.png"]


KILLED_WRITE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("files", sys.argv[2])  # Without TensorFlow: fast.
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
files.atomic_write(sys.argv[1], b"new" * 100000)
print("not reached")
"""


def test_a_kill_in_the_middle_of_a_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("epoch,loss\n0,1.5\n")
    result = run(sys.executable, "-c", KILLED_WRITE, target, files.__file__,
                 PEA_KERAS_FAULT="kill_during_write:history.csv")
    assert result.returncode == -9 and "not reached" not in result.stdout
    assert target.read_text() == "epoch,loss\n0,1.5\n"
    left = [name for name in os.listdir(tmp_path) if name != "history.csv"]
    assert len(left) == 1 and files.is_temporary(left[0])  # Half written, never renamed.
    assert 0 < (tmp_path / left[0]).stat().st_size < 300000
    assert files.remove_stale_temporaries(tmp_path) == [str(tmp_path / left[0])]
    assert os.listdir(tmp_path) == ["history.csv"]


def test_fault_points_do_nothing_unless_named(monkeypatch):
    monkeypatch.delenv(files.FAULT_ENV, raising=False)
    files.fault_point("kill_during_checkpoint", 2)
    monkeypatch.setenv(files.FAULT_ENV, "kill_during_checkpoint:3, kill_during_write:other.json")
    files.fault_point("kill_during_checkpoint", 2)
    files.fault_point("kill_during_write", "metrics.json")


def test_only_our_temporaries_are_swept(tmp_path):
    for name in ("metrics.json", ".hidden", "a.tmp", ".metrics.json.tmp", "notes.pea-tmp-x"):
        (tmp_path / name).write_text("keep")
    fd, tmp = files._temporary(tmp_path / "metrics.json")
    os.close(fd)
    assert files.remove_stale_temporaries(tmp_path) == [tmp]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["metrics.json", ".hidden", "a.tmp", ".metrics.json.tmp", "notes.pea-tmp-x"])


def _specials(folder):
    """{kind: path} of what a write must never replace: a device node (a copy of /dev/null), a FIFO,
    a socket and a folder; each with what identifies it afterwards."""
    import socket
    import stat

    os.mknod(folder / "node", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(folder / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    sock.close()
    (folder / "dir").mkdir()
    (folder / "dir" / "inside").write_text("keep")
    return {"a character device": "node", "a FIFO (named pipe)": "fifo", "a socket": "sock", "a directory": "dir"}


def _identity(path):
    st = os.lstat(path)
    return st.st_ino, st.st_mode, st.st_rdev


WRITE_ALL = {**WRITERS, "atomic_write_many": lambda path, data: files.atomic_write_many({path: data}),
             "atomic_write_many exclusive": lambda path, data: files.atomic_write_many({path: data}, exclusive=True)}


@pytest.mark.parametrize("writer", sorted(WRITE_ALL))
def test_only_regular_files_are_replaced(tmp_path, writer):
    """A device node, FIFO, socket or folder at the target is refused in one line and left as it
    was; through a symlink, the same (the link is not replaced by a file either)."""
    for kind, name in _specials(tmp_path).items():
        os.symlink(name, tmp_path / f"link-to-{name}")
        link = tmp_path / f"link-to-{name}"
        for path, where in ((name, tmp_path / name), (link, f"{tmp_path / name} (where the link {link} leads)")):
            before = _identity(tmp_path / name), _identity(tmp_path / path)
            with pytest.raises(files.NotRegularFileError) as refused:
                WRITE_ALL[writer](str(tmp_path / path), b"new")
            assert str(refused.value) == (f"{where} is {kind}, not a regular file: refusing to replace it, "
                                          "even with --overwrite; choose another path")
            assert (_identity(tmp_path / name), _identity(tmp_path / path)) == before
    assert (tmp_path / "dir" / "inside").read_text() == "keep"
    assert not [n for n in os.listdir(tmp_path) if files.is_temporary(n)]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_symlink_keeps_leading_to_the_new_content(tmp_path, writer):
    """Writing through a symlink replaces its target's content atomically; the link stays."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "v3.tflite").write_bytes(b"old")
    os.symlink("models/v3.tflite", tmp_path / "current.tflite")
    WRITERS[writer](tmp_path / "current.tflite", b"new")
    assert os.readlink(tmp_path / "current.tflite") == "models/v3.tflite"
    assert (tmp_path / "models" / "v3.tflite").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["current.tflite", "models"]
    assert os.listdir(tmp_path / "models") == ["v3.tflite"]


HOLD_LOCK = """
import sys, time
from pea_keras import files
with files.lock(sys.argv[1], "choose another -o"):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holder(path):
    """A process holding files.lock(path) (started and locked when this returns)."""
    proc = start(sys.executable, "-c", HOLD_LOCK, path)
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_one_process_at_a_time_owns_an_output(tmp_path):
    """A second owner is refused at once in one line; a killed owner's lock is free again (the
    kernel drops it), and nothing of the lock stays behind (its file is empty: no room taken)."""
    out = tmp_path / "new" / "deeper" / "model.tflite"
    holder = _holder(out)
    try:
        assert os.listdir(out.parent) == [".model.tflite.pea-lock"]
        assert (out.parent / ".model.tflite.pea-lock").stat().st_size == 0
        with pytest.raises(files.BusyError) as refused, files.lock(out, "choose another -o"):
            pass
        assert str(refused.value) == f"{out} is in use by another process: wait for it to finish, or choose another -o"
    finally:
        holder.kill()
        holder.wait()
    with files.lock(out, "choose another -o"):  # Free again after a SIGKILL.
        files.atomic_write(out, b"mine")
    assert os.listdir(out.parent) == ["model.tflite"]
    run = tmp_path / "elsewhere" / "run"
    with files.lock(run, "choose another --output_dir", folder=True):  # A folder holds its own lock.
        assert os.listdir(run) == [".pea-lock"]
        with pytest.raises(files.BusyError), files.lock(run, "choose another --output_dir", folder=True):
            pass
    assert sorted(os.listdir(tmp_path)) == ["new"]  # Folders the lock created are removed when empty.
