"""Faults from the user's side: full disks, a read-only folder, TensorBoard failing alone, a
SIGKILL in the middle of a checkpoint, SIGTERM at any moment, two processes writing one output and
an output that is a device node or a FIFO, against the real `train.py` and `pea-tflite` processes.

Processes that get killed run as child processes; the others run train.py's and pea-tflite's
main in this process (the same code, without paying for a TensorFlow import each time).

The promises: a failed or killed write leaves the previous complete file; a storage error is one
line naming the path and what is safe, exit status 1, no traceback; and a killed run continues with
`--resume` to the same alpha trace and the same final weights as a run continued from the same
checkpoint by a process that was never killed. (Not the weights of a run never interrupted: a
resumed run restarts the shuffled data stream, so it sees other batches.)

Full disks are small tmpfs mounts (root, as in CI; otherwise the tests skip and say why); kills
come from the PEA_KERAS_FAULT test hook of pea_keras.files.
"""
import json
import os
import re
import sys

import numpy as np
import pytest
from disk import grow, mount_tmpfs, unmount
from fresh import HANG_S, REPO, Result, cli_run, pea_tflite, run, start
from train_cli import call_main

from pea_keras import files

FLAGS = ["--arch=tiny", "--epochs=3", "--steps_per_epoch=2", "--batch_size=16", "--image_size=16",
         "--verbose=0", "--calibration_examples=16", "--tflite_eval_examples=32"]
INT8 = "run_int8.tflite"  # Named after the run directory.
SIGKILL = -9


def python(*argv, fault=None, timeout=HANG_S):
    """A script of the repository in a child process; `fault`: the one injected (none otherwise)."""
    return run(sys.executable, *argv, cwd=REPO, timeout=timeout, **{files.FAULT_ENV: fault or None})


def train(output_dir, *flags, fault=None, tflite_dir=None):
    """train.py in a child process (to be killed by `fault`)."""
    tflite = ["--noexport"] if tflite_dir is None else [f"--tflite_dir={tflite_dir}"]
    return python("train.py", *FLAGS, f"--output_dir={output_dir}", *tflite, *flags, fault=fault)


def train_here(capsys, output_dir, *flags, tflite_dir=None):
    """train.py's main in this process."""
    tflite = ["--noexport"] if tflite_dir is None else [f"--tflite_dir={tflite_dir}"]
    capsys.readouterr()
    code = call_main(*FLAGS, f"--output_dir={output_dir}", *tflite, *flags)
    return Result(code, *capsys.readouterr())


def convert(capsys, model, output, *flags):
    """pea-tflite convert, its main in this process."""
    capsys.readouterr()
    return cli_run(capsys, "convert", model, "-o", output, "--calib_samples=16", *flags)


def messages(result, prog="train.py"):
    """The tool's own lines on stderr (TensorFlow prints start-up lines before absl's logging)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith(f"{prog}:")]


def one_error(result, prog="train.py"):
    lines = messages(result, prog)
    errors = [line for line in lines if line.startswith(f"{prog}: error: ")]
    assert result.returncode == 1 and len(errors) == 1, (result.returncode, result.stderr[-3000:])
    assert result.stderr.rstrip().endswith(errors[0])  # The last word, after any warning.
    return errors[0][len(f"{prog}: error: "):]


@pytest.fixture
def mounts():
    mounted = []

    def mount(directory, size, options=""):
        mount_tmpfs(directory, size, options)
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        unmount(directory)


def leftovers(directory):
    """Temporaries of killed or failed writes, and TensorFlow's unfinished checkpoint folders."""
    found = []
    for root, dirs, names in os.walk(directory):
        found += [os.path.join(root, n) for n in names + dirs
                  if files.is_temporary(n) or n.endswith("_temp")]
    return found


def assert_complete_files(run_dir):
    """Every file a user may open is whole: JSON parses, models are zip archives that test clean."""
    import zipfile

    for root, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(root, name)
            if name.endswith(".json"):
                with open(path) as f:
                    json.load(f)
            elif name.endswith(".keras"):
                with zipfile.ZipFile(path) as z:
                    assert z.testzip() is None, path
            elif name.endswith(".png"):
                with open(path, "rb") as f:
                    data = f.read()
                assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), path


def latest_epoch(run_dir):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else None


def checkpoint_values(run_dir, epoch):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints", f"ckpt-{epoch}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def uninterrupted():
    """The alpha trace of a run never interrupted: PEAScheduler sets alpha = schedule(step) (as
    float32) at every step, and AlphaTrace records each (the 6 steps of FLAGS)."""
    from pea_keras.training import modes
    from pea_keras.training.run import RunConfig

    schedule = modes.get("pea").schedule(RunConfig(), 6)  # FLAGS keep the default mode, schedule, start and end.
    return {"alpha_trace": {"step": list(range(6)),
                            "alpha": [float(np.float32(schedule(step))) for step in range(6)]}}


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_resumes_to_the_same_weights(tmp_path, uninterrupted):
    """Killed while writing epoch 2's checkpoint: epoch 1's stays the checkpoint, and --resume
    ends exactly where a run resumed from epoch 1 without that kill ends."""
    cut, reference = tmp_path / "cut", tmp_path / "reference"
    killed = train(cut, fault="kill_during_checkpoint:2")
    assert killed.returncode == SIGKILL, killed.stderr[-3000:]
    stopped = train(reference, fault="kill_after_checkpoint:1")  # Killed just after a commit.
    assert stopped.returncode == SIGKILL, stopped.stderr[-3000:]

    assert latest_epoch(cut) == 1 and latest_epoch(reference) == 1
    assert os.path.exists(cut / "checkpoints" / "ckpt-2.index")  # Written, never committed.
    assert not os.path.exists(cut / "metrics.json")
    assert_complete_files(cut)
    start, reference_start = checkpoint_values(cut, 1), checkpoint_values(reference, 1)
    assert start.keys() == reference_start.keys() and len(start) > 50
    assert all(np.array_equal(start[k], reference_start[k]) for k in start)  # The same start.

    for run_dir in (cut, reference):
        resumed = train(run_dir, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert messages(resumed) == []
        assert leftovers(run_dir) == []
        assert_complete_files(run_dir)
    done, reference_done = metrics(cut), metrics(reference)
    assert done["alpha_trace"] == reference_done["alpha_trace"] == uninterrupted["alpha_trace"]
    assert done["alpha_trace"]["step"] == list(range(6)) and done["alpha_final"] == 1.0
    assert done["steps_done"] == 6 and done["history"]["epoch"] == [0.0, 1.0, 2.0]
    assert done["final_learning_rate"] == reference_done["final_learning_rate"]
    end, reference_end = checkpoint_values(cut, 3), checkpoint_values(reference, 3)
    assert all(np.array_equal(end[k], reference_end[k]) for k in end)  # Weights and optimizer.
    assert any(not np.array_equal(end[k], start[k]) for k in end)  # It did train on.
    assert done["top1"] == reference_done["top1"]


@pytest.mark.slow
def test_sigkill_while_saving_the_model_leaves_no_half_file(tmp_path):
    """Killed while saving pea_model.keras after training (written to its temporary, not yet
    renamed): no model file, only the hidden temporary; --resume (at the last epoch, so no
    training) writes every file and sweeps the temporary."""
    out = tmp_path / "run"
    killed = train(out, fault="kill_during_write:pea_model.keras")
    assert killed.returncode == SIGKILL, killed.stderr[-3000:]
    assert not os.path.exists(out / "pea_model.keras") and latest_epoch(out) == 3
    assert [os.path.basename(p) for p in leftovers(out)] != [] and all(
        os.path.basename(p).startswith(".pea_model.keras.") for p in leftovers(out))
    resumed = train(out, "--resume")
    assert resumed.returncode == 0 and messages(resumed) == [], resumed.stderr[-3000:]
    assert leftovers(out) == []
    assert_complete_files(out)
    assert metrics(out)["steps_done"] == 6 and latest_epoch(out) == 3


MESSAGE = re.compile(r"No space left on device writing (?P<path>\S+); (?P<safe>.+): free space "
                     r"and (?:run again with (?P<retry>--resume)|run the same command again)$")


@pytest.mark.slow
@pytest.mark.parametrize("size", ["200k", "400k", "640k"])
def test_full_run_directory_stops_with_one_line_and_resumes(tmp_path, capsys, mounts, uninterrupted,
                                                            size):
    """With TensorFlow 2.21, 200k fills before the first checkpoint (TensorBoard's graph takes
    most of it), 400k at the second, 640k after training, at the models. Wherever it stops, the
    message must say what is true on disk, and its advice must work."""
    disk = mounts(tmp_path / "disk", size)
    out = disk / "run"
    message = one_error(train_here(capsys, out))
    match = MESSAGE.match(message)
    assert match, message
    assert match["path"].startswith(str(out)), message
    epoch = latest_epoch(out)
    if epoch is None:
        assert match["safe"] == "no checkpoint was written yet" and match["retry"] is None
    else:
        assert match["safe"] == f"the last complete checkpoint, epoch {epoch}, is intact"
        assert match["retry"] == "--resume"
    assert leftovers(out) == []
    assert_complete_files(out)
    assert not os.path.exists(out / "metrics.json")

    grow(disk, "8m")
    resumed = train_here(capsys, out, *filter(None, [match["retry"]]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert messages(resumed) == []
    assert metrics(out)["alpha_trace"] == uninterrupted["alpha_trace"]
    assert_complete_files(out)
    assert leftovers(out) == []


@pytest.mark.slow
def test_full_disk_for_the_int8_file_keeps_the_earlier_one(tmp_path, capsys, mounts):
    tflite_dir = mounts(tmp_path / "tflite", "16k")
    (tflite_dir / INT8).write_bytes(b"earlier int8 file")
    out = tmp_path / "run"
    message = one_error(train_here(capsys, out, "--overwrite", tflite_dir=tflite_dir))
    assert message == (f"No space left on device writing {tflite_dir / INT8}; the trained models in "
                       f"{out} and the last complete checkpoint, epoch 3, are intact: free space and "
                       "run again with --resume")
    assert (tflite_dir / INT8).read_bytes() == b"earlier int8 file"
    assert os.listdir(tflite_dir) == [INT8]
    assert not os.path.exists(out / "model_int8.tflite")

    grow(tflite_dir, "1m")
    # What the message asks: the same command plus --resume.
    resumed = train_here(capsys, out, "--overwrite", "--resume", tflite_dir=tflite_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    from pea_keras.tflite import relu_only_violations

    assert relu_only_violations(str(tflite_dir / INT8), int8=True) == []
    assert (out / "model_int8.tflite").read_bytes() == (tflite_dir / INT8).read_bytes()
    assert metrics(out)["top1"]["int8"] is not None


@pytest.mark.slow
def test_tensorboard_failing_alone_is_reported_and_training_finishes(tmp_path, capsys, mounts):
    """A full disk under logs/ only: one warning, the run completes, metrics.json says so."""
    out = tmp_path / "run"
    logs = mounts(out / "logs", "4k")
    result = train_here(capsys, out)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = messages(result)
    assert len(lines) == 1, result.stderr[-3000:]
    assert re.fullmatch(
        rf"train\.py: warning: TensorBoard logging stopped: No space left on device writing "
        rf"{re.escape(str(logs))}/\S+; training goes on without TensorBoard logs \(checkpoints, "
        r"models and metrics are not affected\)", lines[0]), lines[0]
    m = metrics(out)
    assert m["alpha_trace"]["step"] == list(range(6)) and m["steps_done"] == 6
    assert any("TensorBoard logging stopped" in w for w in m["warnings"])
    for name in ("pea_model.keras", "relu_model.keras", "history.csv", "alpha.png", "curves.png"):
        assert (out / name).is_file(), name
    assert latest_epoch(out) == 3


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    """A tf_keras CNN on 8x8 digits, saved as .keras."""
    import tf_keras as k

    k.utils.set_random_seed(0)
    L = k.layers
    model = k.Sequential([k.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", activation="relu"),
                          L.Conv2D(32, 3, padding="same", activation="relu"), L.Flatten(),
                          L.Dense(10)])
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    return folder / "model.keras"


@pytest.fixture(scope="module")
def small_model(small_model_file):
    """The model file and the size of its int8 file."""
    from pea_keras.tflite import cli

    folder = small_model_file.parent
    with pytest.raises(SystemExit) as exited:
        cli.main([str(a) for a in ("convert", folder / "model.keras", "-o", folder / "model.tflite",
                                   "--calib_samples=16")])
    assert exited.value.code == 0
    return folder / "model.keras", (folder / "model.tflite").stat().st_size


def fill(disk, leave):
    """Fills `disk` but `leave` bytes (rounded down to whole pages)."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


@pytest.mark.slow
def test_pea_tflite_full_disk_changes_no_file(tmp_path, capsys, mounts, small_model):
    model, size = small_model
    disk = mounts(tmp_path / "disk", "256k")
    output = disk / "model.tflite"
    fill(disk, 0)
    assert one_error(convert(capsys, model, output), "pea-tflite") == (
        f"No space left on device writing {output}; no file was changed: free space and run again")
    assert sorted(os.listdir(disk)) == ["filler"]

    # Room for the .tflite but not for the TFLite Micro kit next to it (its C array takes 6
    # characters a byte): the files are written together or not at all, so the earlier ones stay.
    from pea_keras.tflite.micro_kit import kit_paths

    os.unlink(disk / "filler")
    earlier = {"model.tflite": b"earlier"}
    earlier.update({os.path.basename(p): b"// earlier" for p in kit_paths(disk, "model")})
    for name, data in earlier.items():
        (disk / name).write_bytes(data)
    fill(disk, size + 8192)
    message = one_error(convert(capsys, model, output, "--overwrite"), "pea-tflite")
    match = re.fullmatch(rf"No space left on device writing {re.escape(str(disk))}/(\S+); no file was "
                         r"changed: free space and run again", message)
    assert match and match[1] in earlier and match[1] != "model.tflite", message
    assert {n: (disk / n).read_bytes() for n in earlier} == earlier
    assert sorted(os.listdir(disk)) == sorted(["filler", *earlier])

    os.unlink(disk / "filler")
    done = convert(capsys, model, output, "--overwrite")
    assert done.returncode == 0, done.stderr[-3000:]
    assert output.stat().st_size == size
    assert all((disk / n).read_bytes() != b"// earlier" for n in earlier if n != "model.tflite")


@pytest.mark.slow
def test_pea_tflite_read_only_folder(tmp_path, capsys, mounts, small_model_file):
    model = small_model_file
    disk = mounts(tmp_path / "ro", "64k", "ro")
    message = one_error(convert(capsys, model, disk / "model.tflite", "--target=phone"), "pea-tflite")
    assert message == (f"Read-only file system writing {disk}; nothing was converted: "  # Refused before any work.
                       "the file system is read-only; choose a writable location and run again")
    assert os.listdir(disk) == []


@pytest.mark.slow
def test_sigterm_ends_like_ctrl_c_and_resume_of_a_finished_run_does_nothing(tmp_path):
    """SIGTERM (a scheduler, a preempted machine) after epoch 1's checkpoint: one line, exit 143,
    the checkpoint kept; --resume finishes the run; a second --resume says it has finished."""
    out = tmp_path / "run"
    stopped = train(out, fault="kill_after_checkpoint:1@TERM")
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert messages(stopped) == ["train.py: terminated; continue from the last epoch's checkpoint with the "
                                 "same flags plus --resume"]
    assert latest_epoch(out) == 1 and not os.path.exists(out / "metrics.json")
    resumed = train(out, "--resume")
    assert resumed.returncode == 0 and messages(resumed) == [], resumed.stderr[-3000:]
    assert metrics(out)["steps_done"] == 6
    written = (out / "metrics.json").stat().st_mtime_ns
    again = train(out, "--resume")
    assert again.returncode == 0 and messages(again) == []
    assert again.stdout.strip().splitlines()[-1] == (
        f"train.py: {out} has finished (its metrics.json is written): nothing to resume; to train it "
        "again, pass --overwrite instead of --resume")
    assert (out / "metrics.json").stat().st_mtime_ns == written


# One owner per output, outputs that are not regular files, and SIGTERM at any moment.

def start_python(*argv, fault=None, **extra_env):
    """train.py (or any script of the repository) in a child process that keeps running."""
    return start(sys.executable, *argv, cwd=REPO, **{files.FAULT_ENV: fault or None, **extra_env})


def start_pea_tflite(*args, **extra_env):
    """The installed `pea-tflite` console script in a child process that keeps running."""
    return start("pea-tflite", *args, **extra_env)


def finish(proc, timeout=300):
    stdout, stderr = proc.communicate(timeout=timeout)
    return Result(proc.returncode, stdout, stderr)


def wait_for(condition, timeout=180, what="the condition"):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def children(pid):
    """Process ids whose parent is `pid`, from /proc (no psutil)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid):
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def only_line(result, prog):
    """The tool's single line on stderr (no traceback, nothing else of its own)."""
    lines = messages(result, prog)
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_two_trainings_into_one_output_dir_one_refuses_and_nothing_mixes(tmp_path, small_model_file):
    """While one train.py owns runs/conc, a second (another seed) is refused at once in one line
    (exit 2) and writes nothing; so is a pea-tflite convert onto the run's int8 file, even with
    --overwrite. Every file of the run is the first run's."""
    out, tflite = tmp_path / "conc", tmp_path / "tflite"
    first = start_python("train.py", *FLAGS, "--seed=1", f"--output_dir={out}", f"--tflite_dir={tflite}")
    wait_for(lambda: (out / ".pea-lock").exists() or first.poll() is not None, what="the first run's lock")
    second = finish(start_python("train.py", *FLAGS, "--seed=2", f"--output_dir={out}", f"--tflite_dir={tflite}"))
    assert second.returncode == 2 and second.stdout == "", second.stderr[-3000:]
    assert only_line(second, "train.py") == (f"train.py: error: {out} is in use by another process: wait for it "
                                             "to finish, or choose another --output_dir")
    convert = finish(start_pea_tflite("convert", small_model_file, "-o", tflite / "conc_int8.tflite",
                                      "--overwrite", "--calib_samples=16"))
    assert convert.returncode == 1 and only_line(convert, "pea-tflite") == (
        f"pea-tflite: error: {tflite / 'conc_int8.tflite'} is in use by another process: wait for it to finish, "
        "or choose another -o")
    done = finish(first)
    assert done.returncode == 0 and messages(done) == [], done.stderr[-3000:]
    with open(out / "run_flags.json") as f:
        assert json.load(f)["seed"] == 1
    assert metrics(out)["flags"]["seed"] == 1
    assert (tflite / "conc_int8.tflite").read_bytes() == (out / "model_int8.tflite").read_bytes()
    assert not [n for n in os.listdir(out) + os.listdir(tflite) if n.endswith(".pea-lock")]


@pytest.mark.slow
def test_two_converts_to_one_output_one_refuses(tmp_path, small_model_file):
    """Two `pea-tflite convert -o` to the same file: the second is refused in one line, even with
    --overwrite, and the file and its kit are the first's, whole."""
    out = tmp_path / "model.tflite"
    first = start_pea_tflite("convert", small_model_file, "-o", out, "--calib_samples=16")
    wait_for(lambda: (tmp_path / ".model.tflite.pea-lock").exists() or first.poll() is not None,
             what="the first convert's lock")
    second = finish(start_pea_tflite("convert", small_model_file, "-o", out, "--overwrite", "--calib_samples=16"))
    assert second.returncode == 1 and second.stdout == ""
    assert only_line(second, "pea-tflite") == (f"pea-tflite: error: {out} is in use by another process: wait "
                                               "for it to finish, or choose another -o")
    done = finish(first)
    assert done.returncode == 0, done.stderr[-3000:]
    from pea_keras.tflite.micro_kit import kit_paths

    kit = [os.path.basename(p) for p in kit_paths(tmp_path, "model")]
    assert sorted(os.listdir(tmp_path)) == sorted(["model.tflite", *kit])
    assert f"wrote {out}: {out.stat().st_size} bytes" in done.stdout


def test_convert_never_replaces_a_device_node_or_a_fifo(tmp_path):
    """`pea-tflite convert -o NODE --overwrite` on a copy of /dev/null, a FIFO, or a symlink to the
    node: refused before any work, in one line; the node and the FIFO stay as they were."""
    import stat

    model = tmp_path / "model.keras"
    model.write_bytes(b"never read: the output is refused first")
    os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(tmp_path / "fifo")
    os.symlink("null", tmp_path / "link.tflite")
    before = {name: os.lstat(tmp_path / name) for name in ("null", "fifo", "link.tflite")}
    for output, kind in (("null", "a character device"), ("fifo", "a FIFO (named pipe)"),
                         ("link.tflite", "a character device")):
        result = pea_tflite("convert", model, "-o", tmp_path / output, "--overwrite", "--target=phone")
        where = f"{tmp_path / 'null'} (where the link {tmp_path / output} leads)" if output == "link.tflite" else (
            tmp_path / output)
        assert result.returncode == 1 and only_line(result, "pea-tflite") == (
            f"pea-tflite: error: {where} is {kind}, not a regular file: refusing to replace it, even with "
            "--overwrite; choose another path")
    for name, st in before.items():
        now = os.lstat(tmp_path / name)
        assert (now.st_ino, now.st_mode, now.st_rdev) == (st.st_ino, st.st_mode, st.st_rdev), name
    assert sorted(os.listdir(tmp_path)) == ["fifo", "link.tflite", "model.keras", "null"]


@pytest.mark.slow
def test_sigterm_during_convert_ends_the_converter_and_removes_its_temporaries(tmp_path, small_model_file):
    """SIGTERM to `pea-tflite convert` while its converter child exports the SavedModel: one line,
    exit 143, the child ended (no orphan), no temporary folder or lock left, no output written."""
    temp, out = tmp_path / "tmp", tmp_path / "out"
    temp.mkdir()
    out.mkdir()
    proc = start_pea_tflite("convert", small_model_file, "-o", out / "model.tflite", "--calib_samples=100",
                            TMPDIR=str(temp))  # 100: no few-samples warning races the signal.
    wait_for(lambda: any(os.path.exists(os.path.join(temp, d, "saved_model")) for d in os.listdir(temp))
             or proc.poll() is not None, what="the converter child's SavedModel export")
    converters = children(proc.pid)
    assert converters and proc.poll() is None
    proc.send_signal(15)
    result = finish(proc, timeout=60)
    assert result.returncode == 143
    assert only_line(result, "pea-tflite") == "pea-tflite: error: terminated"
    assert result.stderr.rstrip().endswith("pea-tflite: error: terminated")
    assert not [pid for pid in converters if alive(pid)]
    assert os.listdir(temp) == [] and os.listdir(out) == []


START_UP = [*FLAGS[:1], "--epochs=2", "--steps_per_epoch=400", *FLAGS[3:]]  # The first epoch lasts.
AGAIN = re.compile(r"train\.py: terminated; (nothing|no checkpoint) was written yet: run the same command again")


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [1.5, 3, 5, 8])
def test_sigterm_at_start_up_is_one_line(tmp_path, seconds):
    """SIGTERM while train.py imports TensorFlow, loads data or builds the model: the one line and
    exit 143, never a traceback, never swallowed; before the run directory was written, none exists."""
    import time

    out = tmp_path / "run"
    proc = start_python("train.py", *START_UP, f"--output_dir={out}", f"--tflite_dir={tmp_path / 'tflite'}")
    time.sleep(seconds)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(15)
    result = finish(proc, timeout=120)
    assert result.returncode == 143, result.stderr[-3000:]
    line = only_line(result, "train.py")
    assert AGAIN.fullmatch(line), line
    assert os.path.exists(out) == ("no checkpoint" in line)  # Its lock and the folder it needed are gone.
    assert not os.path.exists(out / ".pea-lock") and not os.path.exists(tmp_path / "tflite")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill_during_write:history.csv@TERM", "kill_during_checkpoint:1@TERM"])
def test_sigterm_at_the_end_of_the_first_epoch_names_the_command_that_finishes_the_run(tmp_path, fault):
    """SIGTERM at the end of epoch 1, before or while its checkpoint is written (a stop waits up to
    a second for TensorFlow's code to return, so the checkpoint may be whole): the line says to run
    the same command again when there is no checkpoint, --resume when there is, and that command
    finishes the run."""
    out = tmp_path / "run"
    stopped = train(out, fault=fault)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    kept = latest_epoch(out) is not None
    next_step = ("continue from the last epoch's checkpoint with the same flags plus --resume" if kept
                 else "no checkpoint was written yet: run the same command again")
    assert only_line(stopped, "train.py") == f"train.py: terminated; {next_step}"
    assert latest_epoch(out) in (None, 1)
    again = train(out, *(["--resume"] if kept else []))
    assert again.returncode == 0 and messages(again) == [], again.stderr[-3000:]
    assert metrics(out)["steps_done"] == 6 and leftovers(out) == []


@pytest.mark.slow
def test_sigterm_during_the_int8_export_resumes(tmp_path):
    """SIGTERM while the int8 file is written: one line advising --resume, which exports it."""
    out, tflite = tmp_path / "run", tmp_path / "tflite"
    stopped = train(out, fault=f"kill_during_write:{INT8}@TERM", tflite_dir=tflite)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert only_line(stopped, "train.py") == ("train.py: terminated; continue from the last epoch's checkpoint "
                                              "with the same flags plus --resume")
    assert not os.path.exists(tflite / INT8) and leftovers(tflite) == []
    resumed = train(out, "--resume", tflite_dir=tflite)
    assert resumed.returncode == 0 and messages(resumed) == [], resumed.stderr[-3000:]
    assert (tflite / INT8).read_bytes() == (out / "model_int8.tflite").read_bytes()


@pytest.mark.slow
def test_compare_stopped_in_its_second_half_resumes(tmp_path):
    """--compare stopped (SIGTERM) in the PEA half's first epoch, with the ReLU half finished: the
    advice is --resume, which reads the ReLU half back and trains the PEA half from its start."""
    import pea_keras
    from pea_keras import console
    from pea_keras.callbacks import BothFlavorsCallback
    from pea_keras.training.comparison import compare
    from pea_keras.training.run import RunConfig

    class StopInThePEAHalf(BothFlavorsCallback):
        def on_train_batch_end(self, batch, logs=None):
            if pea_keras.pea_layers(self.model):
                raise console.Terminated()

    config = RunConfig(arch="tiny", epochs=2, steps_per_epoch=2, batch_size=16, image_size=16, verbose="0",
                       calibration_examples=16, tflite_eval_examples=32, output_dir=str(tmp_path / "c"),
                       tflite_dir=str(tmp_path / "tflite"))
    with pytest.raises(console.Terminated) as stopped:
        compare(config, callbacks=[StopInThePEAHalf()])
    assert stopped.value.next_step == "continue from the last epoch's checkpoint with the same flags plus --resume"
    assert metrics(tmp_path / "c" / "relu")["steps_done"] == 4 and latest_epoch(tmp_path / "c" / "pea") is None
    relu_written = (tmp_path / "c" / "relu" / "metrics.json").stat().st_mtime_ns
    import dataclasses

    done = compare(dataclasses.replace(config, resume=True))
    assert set(done["difference"]) >= {"pea", "stripped", "int8"}
    assert (tmp_path / "c" / "relu" / "metrics.json").stat().st_mtime_ns == relu_written
    assert metrics(tmp_path / "c" / "pea")["steps_done"] == 4


DEFERRED = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from pea_keras import console

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)  # The signal arrives here: an exception would be printed and dropped.
        print("finalizer finished", flush=True)

def called_back_by_tensorflow():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.3)  # The signal arrives here, with TensorFlow's C++ below this frame.
    print("callback finished", flush=True)
    return 0

with console.signals_stop():
    try:
        if sys.argv[2] == "finalizer":
            Finalized()
        elif sys.argv[2] == "tensorflow":
            console.quiet("deferred")  # TensorFlow's start-up log lines, not a traceback, dropped.
            import tensorflow as tf
            tf.py_function(called_back_by_tensorflow, [], tf.int32)
        else:
            import slow_to_import  # The signal arrives in the middle of the import.
        print("after it", flush=True)
        time.sleep(10)
        print("not reached")
    except console.Terminated:
        print("terminated", flush=True)
"""


def test_an_error_that_native_code_raised_over_a_stop_is_that_stop():
    """C code that a signal interrupts may raise its own error in place of the stop (pybind11's
    "MISMATCH ... REPLACED BY Terminated"): after a signal, any error is the stop, an exit is not."""
    import signal
    import time

    from pea_keras import console

    with console.signals_stop():
        assert console.stop_of(RuntimeError("before any signal")) is None
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except console.Terminated:
            pass
        replaced = RuntimeError("pybind11::error_already_set: MISMATCH of original and normalized active "
                                "exception types: ORIGINAL InvalidArgumentError REPLACED BY Terminated")
        assert console.stopped(replaced) == ("terminated", 143)
        assert console.stop_of(SystemExit(0)) is None
    assert console.stop_of(RuntimeError("after the block")) is None


def test_a_signal_the_caller_ignores_stays_ignored():
    """A shell script's background job ignores Ctrl-C; the CLIs keep it so, and SIGTERM still stops them."""
    import signal

    from pea_keras import console

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with console.signals_stop():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("where", ["finalizer", "import", "tensorflow"])
def test_sigterm_inside_a_finalizer_an_import_or_tensorflow_stops_right_after_it(tmp_path, where):
    """A SIGTERM that lands where an exception would be dropped (a finalizer), would leave a
    module half imported (TensorFlow's native start-up) or would be replaced by another error
    (Python code that TensorFlow's C++ calls) stops the program right after that code: never lost,
    never a traceback."""
    (tmp_path / "slow_to_import.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(0.3)\nprint('imported')\n")
    result = run(sys.executable, "-c", DEFERRED, tmp_path, where, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    done = {"finalizer": "finalizer finished", "import": "imported", "tensorflow": "callback finished"}[where]
    assert result.stdout.splitlines() == [done, "after it", "terminated"]
