"""train.py end to end: artefacts, --compare, --resume, --strategy mirrored and user mistakes.

Runs use the tiny CNN on digits with a handful of steps; train.py's main runs in-process where
it can, in a subprocess where TensorFlow must be configured first or exit codes are the point.
"""
import dataclasses
import json
import os
import sys
import textwrap

import pytest
from fresh import HANG_S, start
from train_cli import call_main, refusal, run_script

from pea_keras.tflite import relu_only_violations  # noqa: E402
from pea_keras.training import reporting  # noqa: E402
from pea_keras.training.run import RunConfig, run  # noqa: E402

TINY = dict(arch="tiny", epochs=1, steps_per_epoch=8, batch_size=32, verbose="0",
            calibration_examples=64)


@pytest.mark.slow
def test_one_run_writes_every_artefact(tmp_path):
    out, tfl = tmp_path / "run", tmp_path / "tflite"
    m = run(RunConfig(**TINY, keras="3", output_dir=str(out), tflite_dir=str(tfl)))

    for name in ("pea_model.keras", "relu_model.keras", "model_int8.tflite", "metrics.json",
                 "history.csv", "alpha.png", "curves.png", "alpha_trace.json"):
        assert (out / name).is_file(), name
    tflite_file = tfl / "run_int8.tflite"  # Named after the run directory.
    digits = [str(d) for d in range(10)]  # Output index -> label, in metrics.json and in the kit.
    assert m["class_names"] == digits
    assert ("constexpr const char* kClassNames[kNumClasses] = {" + ", ".join(f'"{d}"' for d in digits) + "};"
            in (tfl / "run_int8_model_settings.h").read_text())
    assert tflite_file.is_file() and m["tflite"]["path"] == str(tflite_file)
    assert json.loads((out / "metrics.json").read_text())["top1"] == m["top1"]

    # alpha reached 1, so the stripped ReLU network computes exactly what the PEA model computes.
    assert m["alpha_final"] == 1.0 and m["alpha_trace"]["alpha"][-1] == 1.0
    assert m["alpha_trace"]["step"] == list(range(8)) and m["alpha_trace"]["alpha"][0] == 0.0
    assert m["top1"]["stripped"] == m["top1"]["pea"] and m["stripped_equals_pea"]
    assert relu_only_violations(str(tflite_file), int8=True) == []
    assert m["sizes"]["tflite_int8_bytes"] == tflite_file.stat().st_size
    assert m["wall_time_s"]["total"] >= m["wall_time_s"]["train"] + m["wall_time_s"]["export"]
    assert m["flags"]["arch"] == "tiny"

    history = reporting.read_history(out)
    assert history["pea_alpha"] == [1.0] and "val_accuracy" in history

    import tensorflow as tf  # TensorBoard saw pea_alpha (PEAScheduler runs before it).
    tags = set()
    for event_file in (out / "logs" / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert any("pea_alpha" in t for t in tags), tags


@pytest.mark.slow
def test_compare_writes_both_runs_and_the_difference(tmp_path):
    rc = call_main("--compare", "--arch=tiny", "--epochs=1", "--steps_per_epoch=6",
                   "--batch_size=32", "--noexport", "--verbose=0", f"--output_dir={tmp_path}")
    assert rc == 0
    comparison = json.loads((tmp_path / "compare.json").read_text())
    relu = json.loads((tmp_path / "relu" / "metrics.json").read_text())
    pea = json.loads((tmp_path / "pea" / "metrics.json").read_text())
    assert relu["mode"] == "relu" and pea["mode"] == "pea"
    assert relu["flags"]["seed"] == pea["flags"]["seed"]
    for form in ("pea", "stripped"):
        assert comparison["difference"][form] == pytest.approx(pea["top1"][form] - relu["top1"][form])
    assert relu["alpha_trace"]["step"] == [] and pea["alpha_trace"]["alpha"][-1] == 1.0


def test_relu_gradient_g_reaches_every_pealayer_and_names_the_run(tmp_path):
    """--relu_gradient g: every PEALayer of the run gives its ReLU branch g's gradient; the default run
    directory says so, so the run never meets its baseline's."""
    from pea_keras import pea_layers
    from pea_keras.training import config as config_lib
    from pea_keras.training import run as run_lib
    from pea_keras.training import tasks

    r = run_lib.prepare(RunConfig(**TINY, relu_gradient="g", output_dir=str(tmp_path / "run")))
    run_lib.build(r)
    assert pea_layers(r.model) and all(layer.relu_gradient == "g" for layer in pea_layers(r.model))
    assert tasks.with_defaults(RunConfig(arch="tiny", relu_gradient="g")).run_name() == "tiny_pea-g_digits"
    # relufy's recipe has the g gradient: its plain run keeps the plain name, the departure is named.
    relufy = tasks.with_defaults(config_lib.recipe("relufy", init_from="my_silu_model.keras"))
    assert relufy.run_name() == "my_silu_model_relufy_digits"
    assert dataclasses.replace(relufy, relu_gradient="relu").run_name() == "my_silu_model_relufy-relu_digits"


@pytest.mark.slow
def test_compare_with_relu_gradient_g_trains_the_relu_baseline_and_the_hybrid(tmp_path):
    rc = call_main("--compare", "--relu_gradient=g", "--arch=tiny", "--epochs=1", "--steps_per_epoch=6",
                   "--batch_size=32", "--noexport", "--verbose=0", f"--output_dir={tmp_path}")
    assert rc == 0
    relu = json.loads((tmp_path / "relu" / "metrics.json").read_text())
    pea = json.loads((tmp_path / "pea" / "metrics.json").read_text())
    assert (relu["flags"]["relu_gradient"], pea["flags"]["relu_gradient"]) == ("relu", "g")
    assert pea["alpha_trace"]["alpha"][-1] == 1.0 and pea["stripped_equals_pea"]


@pytest.mark.slow
def test_two_compare_sweeps_keep_their_own_int8_files(tmp_path):
    """Each --compare run's int8 file is named after its output folder: sweeps never collide."""
    tflite = tmp_path / "tflite"
    for sweep in ("a", "b"):
        rc = call_main("--compare", "--arch=tiny", "--epochs=1", "--steps_per_epoch=4", "--batch_size=16",
                       "--calibration_examples=16", "--tflite_eval_examples=16", "--verbose=0",
                       f"--output_dir={tmp_path / sweep}", f"--tflite_dir={tflite}")
        assert rc == 0
    assert sorted(p.name for p in tflite.glob("*.tflite")) == [
        "a_pea_int8.tflite", "a_relu_int8.tflite", "b_pea_int8.tflite", "b_relu_int8.tflite"]


@pytest.mark.slow
def test_same_seed_same_run_in_one_process(tmp_path):
    """--compare's promise: the second run of a process sees the same batches and weights."""
    config = RunConfig(**{**TINY, "steps_per_epoch": 4}, mode="relu", export=False)
    first = run(dataclasses.replace(config, output_dir=str(tmp_path / "a")))
    second = run(dataclasses.replace(config, output_dir=str(tmp_path / "b")))
    assert first["history"]["loss"] == second["history"]["loss"]
    assert first["top1"] == second["top1"]


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_continues_alpha_and_learning_rate(tmp_path):
    import tf_keras

    config = RunConfig(**{**TINY, "epochs": 2, "steps_per_epoch": 4}, export=False)
    whole = run(dataclasses.replace(config, output_dir=str(tmp_path / "whole")))

    class StopAfterFirstEpoch(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Interrupted  # Like a kill after the epoch's checkpoint was written.

    cut = str(tmp_path / "cut")
    with pytest.raises(Interrupted):
        run(dataclasses.replace(config, output_dir=cut), callbacks=[StopAfterFirstEpoch()])
    assert reporting.load_alpha_trace(cut)[0] == [0, 1, 2, 3]
    resumed = run(dataclasses.replace(config, output_dir=cut, resume=True))

    assert resumed["alpha_trace"] == whole["alpha_trace"]
    assert resumed["steps_done"] == whole["steps_done"] == 8
    assert resumed["final_learning_rate"] == whole["final_learning_rate"]
    assert len(resumed["history"]["epoch"]) == 2  # history.csv continued, not restarted.

    from pea_keras.errors import UsageError
    with pytest.raises(UsageError, match="--epochs 2 -> 3"):
        run(dataclasses.replace(config, output_dir=cut, resume=True, epochs=3))


MIRRORED = textwrap.dedent("""
    import importlib, json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import pea_keras
    from pea_keras.training.run import RunConfig, run

    flavor = sys.argv[2]
    k = importlib.import_module("keras" if flavor == "3" else "tf_keras")
    per_replica = []

    def replicas(variable):  # Keras 3 wraps the tf.distribute variable in .value.
        v = variable if flavor == "2" else variable.value
        return [float(r.numpy()) for r in tf.distribute.get_strategy().experimental_local_results(v)]

    class ReplicaAlphas(k.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            with self.model.distribute_strategy.scope():
                per_replica.append([replicas(layer.alpha)
                                    for layer in pea_keras.pea_layers(self.model)])

    m = run(RunConfig(arch="tiny", epochs=1, steps_per_epoch=6, batch_size=16, export=False,
                      verbose="0", strategy="mirrored", keras=flavor, output_dir=sys.argv[1]),
            callbacks=[ReplicaAlphas()])
    print(json.dumps({"replicas": m["replicas"], "per_replica": per_replica,
                      "trace": m["alpha_trace"], "stripped_equals_pea": m["stripped_equals_pea"]}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["2", "3"])
def test_mirrored_strategy_keeps_alpha_identical_on_replicas(tmp_path, flavor):
    result = run_script("-c", MIRRORED, str(tmp_path), flavor)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert len(out["per_replica"]) == 6
    for step, layers in enumerate(out["per_replica"]):
        for replicas in layers:
            assert len(replicas) == 2 and replicas[0] == replicas[1]
        assert layers[0][0] == out["trace"]["alpha"][step]
    assert out["trace"]["alpha"][-1] == 1.0 and out["stripped_equals_pea"]


def test_bad_flags_exit_with_one_line():
    for args, reason in [(["--mode=bogus"], "flag --mode=bogus"),
                         (["--epochs=x"], "flag --epochs=x"),
                         (["--task=bogus"], "flag --task=bogus"),
                         (["stray"], "unexpected arguments: stray")]:
        result = run_script("train.py", *args)
        assert result.returncode == 2, args
        assert result.stderr.strip().splitlines() == [
            line for line in result.stderr.strip().splitlines() if reason in line], result.stderr
        assert "Traceback" not in result.stderr


def test_missing_dataset_exits_with_one_line(tmp_path):
    result = run_script("train.py", "--dataset=cifar10", f"--data_dir={tmp_path}",
                        "--download=never", f"--output_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and "tfds build cifar10" in errors[0]


@pytest.mark.parametrize("args,reason", [
    (["--arch=vgg"], "--arch must be one of mobilenet_v1, mobilenet_v2,"),
    (["--activation=nope"], "Unknown activation 'nope'"),
    (["--pea_start=0.8", "--pea_end=0.5"], "--pea_start < --pea_end"),
    (["--arch=tiny", "--pea_end=1.0", "--epochs=1", "--steps_per_epoch=4"],
     "lower --pea_end below 1: at 1, alpha reaches 1 only after the last step"),
    (["--arch=tiny", "--batch_size=5000"], "larger than the training split"),
    (["--resume"], "--resume: no checkpoint"),
    (["--arch=mobilenet_v2", "--image_size=16"], "--image_size must be >= 32 for mobilenet_v2, got 16"),
    (["--strategy=multiworker", "--keras=3"], "--strategy multiworker needs --keras 2"),
    (["--augment=flips"], "--augment must be auto, none, or a comma list of flip and crop"),
    (["--arch=tiny", "--augment=crop"], "--augment crop: the built-in digits are not augmented"),
    (["--backend=jax", "--keras=2"], "--backend jax needs --keras 3: tf_keras runs on TensorFlow only"),
    (["--distill=self", "--mode=relu"], "--distill self needs --mode pea"),
    (["--distill=teacher:/no/such.keras"], "--distill teacher:/no/such.keras: no such file or directory"),
    (["--distill=bogus"], "--distill must be none, self, init or teacher:PATH, got bogus"),
    (["--distill_weight=2"], "--distill_weight must be in [0, 1], got 2.0"),
    (["--mode=surrogate", "--relu_gradient=g"],
     "--relu_gradient g needs --mode pea, novel or relufy (--mode surrogate has no blend)"),
])
def test_user_mistakes_are_one_line(tmp_path, capsys, args, reason):
    assert reason in refusal(tmp_path, capsys, *args)
    assert not (tmp_path / "run").exists()  # A refused run leaves nothing behind.


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_jax_or_torch_run_ends_with_the_int8_file_and_its_kit(tmp_path, backend):
    """A fresh train.py on the backend, so KERAS_BACKEND is set before keras is imported; the int8
    export runs under TensorFlow in a child process."""
    pytest.importorskip(backend)
    out, tfl = tmp_path / "run", tmp_path / "tflite"
    result = run_script("train.py", "--arch=tiny", f"--backend={backend}", "--epochs=1", "--steps_per_epoch=4",
                        "--batch_size=16", "--calibration_examples=32", "--tflite_eval_examples=64",
                        "--verbose=0", f"--output_dir={out}", f"--tflite_dir={tfl}")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-3000:]  # No warning flood.
    m = json.loads((out / "metrics.json").read_text())
    assert m["backend"] == backend and m["flags"]["backend"] == backend and m["warnings"] == []
    assert m["alpha_trace"] == {"step": [0, 1, 2, 3], "alpha": [0.0, 0.25, 0.75, 1.0]}  # Cosine to 1 at 75 %.
    assert reporting.read_history(out)["pea_alpha"] == [1.0]
    assert m["top1"]["stripped"] == m["top1"]["pea"]
    assert sorted(p.name for p in out.iterdir()) == [
        "alpha.png", "alpha_trace.json", "curves.png", "history.csv", "logs", "metrics.json",
        "model_int8.tflite", "pea_model.keras", "relu_model.keras", "run_flags.json"]  # No checkpoints.
    assert sorted(p.name for p in tfl.iterdir()) == sorted(
        f"run_int8{suffix}" for suffix in (".tflite", "_model_data.cc", "_model_data.h", "_op_resolver.h",
                                           "_model_settings.h", "_test_data.cc", "_test_data.h"))
    assert (tfl / "run_int8.tflite").read_bytes() == (out / "model_int8.tflite").read_bytes()
    assert relu_only_violations(str(tfl / "run_int8.tflite"), int8=True) == []
    assert m["tflite"]["micro_arena_bytes"] > 0
    assert m["sizes"]["tflite_int8_bytes"] == (tfl / "run_int8.tflite").stat().st_size


@pytest.mark.slow
def test_surrogate_and_distilled_runs_deploy_relu_only_int8_files(tmp_path):
    """--mode novel trains a teacher; --mode surrogate learns from it (--distill teacher:PATH) and
    --distill self from its own average; each ends with a ReLU-only int8 file. A teacher of the
    other flavor is one line."""
    short = ["--arch=tiny", "--epochs=1", "--steps_per_epoch=4", "--batch_size=16", "--calibration_examples=16",
             "--tflite_eval_examples=16", "--verbose=0", f"--tflite_dir={tmp_path / 'tflite'}"]
    teacher = tmp_path / "teacher"
    assert run_script("train.py", *short, "--mode=novel", "--noexport", f"--output_dir={teacher}").returncode == 0
    for name, args in [("sugar_kd", ["--mode=surrogate", f"--distill=teacher:{teacher / 'pea_model.keras'}",
                                     "--distill_weight=0.7", "--distill_temperature=2"]),
                       ("self_kd", ["--distill=self"])]:
        result = run_script("train.py", *short, *args, f"--output_dir={tmp_path / name}")
        assert (result.returncode, result.stderr) == (0, ""), result.stderr[-3000:]
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m["top1"]["stripped"] == m["top1"]["pea"] and m["alpha_final"] == 1.0
        assert relu_only_violations(str(tmp_path / "tflite" / f"{name}_int8.tflite"), int8=True) == []
    assert m["flags"]["distill"] == "self"
    result = run_script("train.py", *short, "--keras=2", "--mode=relu",
                        f"--distill=teacher:{teacher / 'pea_model.keras'}", f"--output_dir={tmp_path / 'wrong'}")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"train.py: error: --distill teacher:{teacher / 'pea_model.keras'} is a Keras 3 (--keras 3) model; this run "
        "trains tf_keras (--keras 2)"], result.stderr


def save_teacher(k, path, input_shape=(32, 32, 1), classes=10, activation=None):
    """A small saved classifier of flavor `k`, its last layer named `scores`."""
    inputs = k.Input(input_shape)
    hidden = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3, activation="relu")(inputs))
    k.Model(inputs, k.layers.Dense(classes, activation=activation, name="scores")(hidden)).save(path)
    return path


@pytest.mark.slow
def test_a_teacher_is_checked_against_the_run_before_training(tmp_path, k):
    """Another input size or number of classes: one line naming both shapes, exit 2, no run folder
    (not a traceback at the first step). Probabilities where distillation softens logits: a warning."""
    short = ["--arch=tiny", f"--keras={2 if k.__name__ == 'tf_keras' else 3}", "--mode=relu", "--epochs=1",
             "--steps_per_epoch=2", "--batch_size=16", "--noexport", "--verbose=0", f"--output_dir={tmp_path / 'run'}"]
    for shape, classes, problem in [
            ((16, 16, 1), 10, "input (None, 16, 16, 1) does not match the student's (None, 32, 32, 1): distillation "
                              "feeds both the same batch."),
            ((32, 32, 1), 5, "output (None, 5) does not match the student's (None, 10): distillation needs the "
                             "same logits.")]:
        teacher = save_teacher(k, tmp_path / f"teacher_{classes}.keras", shape, classes)
        result = run_script("train.py", *short, f"--distill=teacher:{teacher}")
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            f"train.py: error: --distill teacher:{teacher}: the teacher's {problem}"], result.stderr[-3000:]
        assert not (tmp_path / "run").exists()
    teacher = save_teacher(k, tmp_path / "softmax.keras", activation="softmax")
    result = run_script("train.py", *short, f"--distill=teacher:{teacher}")
    assert result.returncode == 0 and result.stderr.strip().splitlines() == [
        "train.py: warning: the teacher's outputs look like probabilities (its output layer scores ends in "
        "softmax), not the logits distillation softens; give a teacher without its final softmax or sigmoid"
    ], result.stderr[-3000:]


@pytest.mark.slow
def test_an_image_folder_with_an_empty_class_folder_is_refused(tmp_path):
    """Else the model gets an output for a class it never sees, and the run says nothing."""
    from PIL import Image

    photos = tmp_path / "photos"
    for name in ("cat", "dog"):
        (photos / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(photos / name / f"{i}.png")
    (photos / "bird").mkdir()
    result = run_script("train.py", "--arch=tiny", f"--dataset=folder:{photos}", f"--output_dir={tmp_path / 'run'}",
                        f"--tflite_dir={tmp_path / 'tflite'}")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"train.py: error: --dataset folder:{photos}: no images (.png, .jpg, .jpeg, .bmp, .gif) in class folder "
        f"{photos / 'bird'}; add images or remove the folder"], result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]  # Nothing written.


@pytest.mark.slow
@pytest.mark.parametrize("args,reason", [
    (["--backend=torch", "--strategy=mirrored"],
     "--strategy mirrored needs --backend tensorflow: tf.distribute does not drive Keras 3 on torch"),
    (["--backend=jax", "--resume"], "--resume needs --backend tensorflow: runs on jax keep no checkpoints"),
])
def test_what_jax_and_torch_runs_cannot_do_is_one_line(tmp_path, args, reason):
    pytest.importorskip(args[0].split("=")[1])
    result = run_script("train.py", *args, f"--output_dir={tmp_path / 'run'}", f"--tflite_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"train.py: error: {reason}"], result.stderr
    assert not (tmp_path / "run").exists()


def test_backend_cannot_change_once_keras_is_imported(capsys):
    import keras

    from pea_keras import console

    with pytest.raises(SystemExit) as stopped:
        call_main("--backend=jax", "--arch=tiny")
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{console.prog('pea-train')}: error: --backend jax: this process already runs Keras 3 on "
        f"{keras.backend.backend()}; "
        "set KERAS_BACKEND=jax before importing keras"]


@pytest.mark.parametrize("earlier", ["run/metrics.json", "run_int8.tflite"])
def test_an_earlier_run_is_never_overwritten_without_asking(tmp_path, capsys, earlier):
    (tmp_path / "run").mkdir()
    (tmp_path / earlier).write_text("earlier results")
    rc = call_main("--arch=tiny", f"--output_dir={tmp_path / 'run'}", f"--tflite_dir={tmp_path}",
                   "--verbose=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "exists from an earlier run; pass --overwrite" in err[0], err
    assert (tmp_path / earlier).read_text() == "earlier results"


def test_output_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    rc = call_main("--arch=tiny", f"--output_dir={tmp_path / 'taken'}", "--verbose=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"train.py: error: --output_dir {tmp_path / 'taken'} is a file, not a directory"]


def test_int8_files_are_named_after_the_run_directory(tmp_path, monkeypatch):
    from pea_keras.training import rundir

    monkeypatch.chdir(tmp_path)
    a = RunConfig(arch="tiny", dataset="digits", output_dir="runs/seed0", tflite_dir="tflite")
    b = dataclasses.replace(a, output_dir="runs/seed1")
    assert rundir.tflite_path(a) == str(tmp_path / "tflite" / "seed0_int8.tflite")
    assert rundir.tflite_path(a) != rundir.tflite_path(b)
    (tmp_path / "tflite").mkdir()
    (tmp_path / "tflite" / "seed0_int8.tflite").write_text("seed 0's file")
    rundir.check(b)  # A sweep's second run is not blocked by the first run's file.
    with pytest.raises(Exception, match="seed0_int8.tflite exists from an earlier run"):
        rundir.check(a)
    # The same run directory however it is spelled, so --resume accepts ./runs/x and /abs/runs/x.
    for spelling in ("./runs/seed0", str(tmp_path / "runs" / "seed0"), "runs//seed0/"):
        assert dataclasses.replace(a, output_dir=spelling).run_dir() == a.run_dir()
    (tmp_path / "runs" / "seed0").mkdir(parents=True)
    rundir.prepare(a, a.run_dir())
    rundir.check_resume_flags(dataclasses.replace(a, output_dir="./runs/seed0", resume=True), a.run_dir())


def test_help_exits_zero_without_tensorflow():
    for flag in ("--help", "--helpshort"):
        result = run_script("-X", "importtime", "train.py", flag)
        assert result.returncode == 0 and "--arch" in result.stdout and "--compare" in result.stdout
        assert "tensorflow" not in result.stderr  # -X importtime lists every module imported.


MULTIWORKER = textwrap.dedent("""
    import json, sys
    import pea_keras
    from pea_keras.training.run import RunConfig, run
    import tf_keras

    alphas = []

    class Alphas(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            alphas.append(float(pea_keras.pea_layers(self.model)[0].alpha.numpy()))

    m = run(RunConfig(arch="tiny", image_size=16, epochs=1, steps_per_epoch=6, batch_size=16,
                      verbose="0", strategy="multiworker", keras="2", output_dir=sys.argv[1],
                      tflite_dir=sys.argv[2], calibration_examples=32),
            callbacks=[Alphas()])
    print(json.dumps({"alphas": alphas, "replicas": m["replicas"], "run_dir": m["run_dir"]}))
""")


JAX_MULTIWORKER = textwrap.dedent("""
    import json, sys
    import keras
    from pea_keras.training.run import RunConfig, run

    alphas = []

    class Alphas(keras.callbacks.Callback):  # After PEAScheduler, which logs the alpha it set.
        def on_train_batch_end(self, batch, logs=None):
            alphas.append(float(logs["pea_alpha"]))

    m = run(RunConfig(arch="tiny", image_size=16, epochs=1, steps_per_epoch=6, batch_size=16,
                      verbose="0", strategy="multiworker", backend="jax", output_dir=sys.argv[1],
                      tflite_dir=sys.argv[2], calibration_examples=32),
            callbacks=[Alphas()])
    print(json.dumps({"alphas": alphas, "replicas": m["replicas"], "run_dir": m["run_dir"], "top1": m["top1"]}))
""")


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["tf_keras", "keras 3 on jax"])
def test_two_multiworker_processes_train_in_step_and_only_the_chief_writes(tmp_path, flavor):
    """tf_keras under MultiWorkerMirroredStrategy, Keras 3 under keras.distribution on JAX: the
    same TF_CONFIG, the same alpha at every step on both processes, one run directory."""
    if flavor != "tf_keras":
        pytest.importorskip("jax")
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    backend = {} if flavor == "tf_keras" else {"KERAS_BACKEND": "jax"}
    procs = []
    for index in range(2):
        cluster = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        script = MULTIWORKER if flavor == "tf_keras" else JAX_MULTIWORKER
        procs.append(start(sys.executable, "-c", script, tmp_path / "run", tmp_path / "tflite", cwd=tmp_path,
                           TF_CONFIG=cluster, **backend))
    outs = [p.communicate(timeout=HANG_S) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    chief, other = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["alphas"] == other["alphas"] and len(chief["alphas"]) == 6 and chief["alphas"][-1] == 1.0
    assert chief["run_dir"] == str(tmp_path / "run") and not os.path.exists(other["run_dir"])
    assert {name.split("_int8")[0] for name in os.listdir(tmp_path / "tflite")} == {"run"}  # The chief's file and kit.
    assert (tmp_path / "tflite" / "run_int8.tflite").exists()
    assert "workers" not in os.listdir(tmp_path / "run") and (tmp_path / "run" / "metrics.json").exists()
