"""The documentation is executed: every shell command and Python snippet of README.md and
tflite/README.md runs here as a user would type it, in a new folder, through the installed console
scripts and `train.py`, with the shortenings stated below (one short epoch, small batches, the
offline data in place of data this machine cannot download). A block without a runner fails the
suite, so a new command cannot go untested, and neither can a renamed flag."""
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from fresh import HANG_S, REPO, fresh_python, pea_tflite, run

from pea_keras.tflite.micro_kit import KIT_SUFFIXES

pytestmark = pytest.mark.slow
DOCS = ("README.md", "tflite/README.md")

# Shortening of every train.py command: one epoch of four small steps (the fewest at which alpha ends at
# 1), few calibration and test images, and the int8 files in the folder of the test instead of tflite/.
SHORT = ("--epochs 1 --steps_per_epoch 4 --batch_size 16 --calibration_examples 16 --tflite_eval_examples 16 "
         "--verbose 0 --tflite_dir tflite")
# Data this machine cannot download or does not have, replaced by the offline data of the same task.
OFFLINE = [(r"--dataset (cifar10|imagenet2012)", "--dataset digits"),
           (r"--dataset (cityscapes|folder:/data/seg)", "--dataset digit_scenes"),
           (r"--data_dir \S+", ""), (r"--image_size (224|512)", "--image_size 0")]


def blocks(doc):
    """(first line number, language, text) of every fenced block of `doc`."""
    text = (REPO / doc).read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1), m.group(2))
            for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def shell(script, cwd, timeout=HANG_S):
    """`script` in bash, as typed, with train.py commands shortened; fails on any non-zero exit."""
    lines = []
    for line in script.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if "train.py" in line and "--help" not in line:
            for pattern, offline in OFFLINE:
                line = re.sub(pattern, offline, line)
            background = line.endswith("&")
            line = line.rstrip("& ") + " " + SHORT + (" &" if background else "")
        lines.append(line.replace("python train.py", f"python {REPO}/train.py"))
    code = "set -euo pipefail\n" + "\n".join(lines) + "\nwait\n"
    result = run("bash", "-c", code, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, f"{code}\n--- stderr:\n{result.stderr[-4000:]}"
    return result


def quick_start(script, cwd):
    """The main job as written (shortened); the test command is what CI runs (.ci/run), not run here
    again from inside the suite."""
    install_and_train, install_and_test = script.strip().splitlines()
    assert install_and_train.startswith("pip install -e . && ")
    shell(install_and_train.split(" && ", 1)[1], cwd)
    assert (cwd / "runs" / "mobilenet_v2_pea_digits" / "pea_model.keras").is_file()
    assert install_and_test in (REPO / ".ci" / "run").read_text()


def after_quick_start(script, cwd):
    shell("python train.py --arch mobilenet_v2", cwd)
    shell(script, cwd)


def library(snippet, cwd):
    """The library snippet with the data it leaves to the user (a digits CNN, its images and
    labels) defined first, and 2 epochs instead of 20."""
    prelude = textwrap.dedent("""
        import keras as _k
        from sklearn.datasets import load_digits
        _d = load_digits()
        x, y = (_d.images[..., None] / 16.0).astype("float32"), _d.target
        _i = _k.Input((8, 8, 1))
        _h = _k.layers.Conv2D(8, 3, activation="relu")(_i)
        keras_model = _k.Model(_i, _k.layers.Dense(10, activation="softmax")(_k.layers.Flatten()(_h)))
    """)
    code = prelude + snippet.replace("epochs=20", "epochs=2")
    result = run("python", "-c", code, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]


def resume_line(script, cwd):
    """`--resume` continues a run: the run to continue is made first."""
    shell("python train.py --output_dir runs/x", cwd)
    shell(script, cwd)


def multiworker(script, cwd):
    """Two workers as written, on two free ports of this machine instead of 20001 and 20002."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    shell(script.replace("20001", ports[0]).replace("20002", ports[1]), cwd)
    assert (cwd / "runs" / "mw" / "metrics.json").is_file()


def kit_commands(script, cwd):
    """tflite/README.md's commands on a model saved where they expect it; `[--json]` typed as
    `--json`."""
    shell(f"python {REPO}/train.py --arch tiny --output_dir runs/tiny", cwd)  # its int8 file in tflite/
    (cwd / "runs" / "tiny" / "pea_model.keras").rename(cwd / "runs" / "model.keras")
    shell(script.replace("[--json]", "--json"), cwd)


def measured(script, cwd):
    """The measurement's commands, with make_mnv2.py being the Python block after them, and 5 timed
    runs instead of 50 or 100."""
    _, _, make = next(b for b in blocks("tflite/README.md") if b[2].startswith("import numpy as np, keras"))
    (cwd / "make_mnv2.py").write_text(make)
    shell(re.sub(r"--runs \d+", "--runs 5", script), cwd)


def self_test_folder(script, cwd):
    """The walk-through's example folder on the kit train.py writes (its KIT line pointing at it),
    then its Makefile.inc (the next block) read by make with TFLite Micro's one macro it calls
    recorded: every file it lists is there, main.o alone gets -DPEA_MODEL=<name>, and main.o is
    out of date again when a kit header changes or another kit (older files, another name)
    replaces this one."""
    shell(f"python {REPO}/train.py --arch tiny", cwd)
    shell(re.sub(r"^KIT=.*$", "KIT=tflite", script, flags=re.M), cwd)
    example = cwd / "tensorflow/lite/micro/examples/pea_selftest"
    _, _, makefile = next(b for b in blocks("tflite/README.md") if b[1] == "make")
    (example / "Makefile.inc").write_text(makefile)
    main_o = f"gen/obj/{example.relative_to(cwd)}/main.o"
    (cwd / "stub.mk").write_text(textwrap.dedent(f"""\
        CORE_OBJDIR := gen/obj/
        define microlite_test
        LISTED := $(2) $(3)
        endef
        include tensorflow/lite/micro/examples/pea_selftest/Makefile.inc
        files:
        \t@ls $(LISTED)
        {main_o} gen/obj/other.o:
        \t@echo $@: $(CXXFLAGS)
        \t@mkdir -p $(@D) && touch $@
        """))
    out = shell(f"make -s -f stub.mk files {main_o} gen/obj/other.o", cwd).stdout.splitlines()
    name = "tiny_pea_digits_int8"  # what `python train.py --arch tiny` writes
    listed = [line.rsplit("/", 1) for line in out[:-2]]
    assert {folder for folder, _ in listed} == {str(example.relative_to(cwd))}
    assert sorted(name for _, name in listed) == sorted(["main.cc", *(name + s for s in KIT_SUFFIXES)])
    assert out[-2:] == [f"{main_o}: -DPEA_MODEL={name}", "gen/obj/other.o:"]

    def up_to_date():
        return subprocess.run(["make", "-q", "-f", "stub.mk", main_o], cwd=cwd).returncode == 0

    now = time.time()
    for path in [*example.iterdir(), *(cwd / "gen").rglob("*.stamp")]:  # All made a while ago, main.o after.
        os.utime(path, (now - 100, now - 100))
    os.utime(cwd / main_o, (now - 50, now - 50))
    assert up_to_date()
    header = example / f"{name}_model_settings.h"
    os.utime(header, (now - 10, now - 10))  # A new kit of the same name, copied after main.o was built.
    assert not up_to_date()
    shell(f"make -s -f stub.mk {main_o}", cwd)
    assert up_to_date()
    for suffix in KIT_SUFFIXES:  # Another kit, its files older than main.o: only its name differs.
        os.rename(example / (name + suffix), example / ("other" + suffix))
    assert not up_to_date()
    assert shell(f"make -s -f stub.mk {main_o}", cwd).stdout == f"{main_o}: -DPEA_MODEL=other\n"


def printed_kit_names(printed, cwd):
    """The names convert prints for a stem with '-', '.' and a leading digit, as the block shows
    them (its '...' standing for the files between), on a digits CNN saved where the block's
    paths expect it."""
    fresh_python("""
        import keras
        i = keras.Input((8, 8, 1))
        h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(i))
        keras.Model(i, keras.layers.Dense(10)(h)).save("m.keras")
    """, cwd=cwd)
    (cwd / "tflite").mkdir()
    out = shell("pea-tflite convert m.keras -o tflite/1st-model.v2.tflite", cwd).stdout.splitlines()
    first, dots, last, build = printed.strip().splitlines()
    kit = out[out.index(first):]
    assert (dots, kit[5], kit[6:]) == ("...", last, [build]), out


# What TFLite Micro's `make print-CXXFLAGS print-INCLUDES` prints for cortex_m_generic's flags that
# carry shell quoting (its makefile's ARM_CPU := "ARMC$(CORE)"), by its `print-%` rule
# (helper_functions.inc: `@echo '$*=$($*)'`, then origin and flavor).
PRINTED_FLAGS = [
    "CXXFLAGS=-std=c++17 -DTF_LITE_STATIC_MEMORY "
    '-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE=\\""ARMCM4".h\\" -D"ARMCM4" -DCMSIS_NN',
    "  origin = file", "  flavor = recursive",
    'INCLUDES=-I. -Itensorflow/lite/micro/tools/make/downloads/cmsis/Cortex_DFP/Device/"ARMCM4"/Include',
    "  origin = file", "  flavor = simple"]


def tflm_flags(script, cwd):
    """Step 4 with a stand-in for TFLite Micro's make that prints PRINTED_FLAGS (and builds
    nothing): the list holds every flag as the compiler gets it, one a line, unquoted."""
    (cwd / "bin").mkdir()
    (cwd / "printed.txt").write_text("\n".join(PRINTED_FLAGS) + "\n")
    (cwd / "bin" / "make").write_text(f'#!/bin/bash\ncase "$*" in *print-*) cat {cwd / "printed.txt"};; esac\n')
    (cwd / "bin" / "make").chmod(0o755)
    shell(f"export PATH={cwd / 'bin'}:$PATH\n{script}", cwd)
    assert (cwd / "tflm_flags.txt").read_text().splitlines() == [
        "-std=c++17", "-DTF_LITE_STATIC_MEMORY", '-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="ARMCM4.h"', "-DARMCM4",
        "-DCMSIS_NN", "-I.", "-Itensorflow/lite/micro/tools/make/downloads/cmsis/Cortex_DFP/Device/ARMCM4/Include"]


def self_test_log(log, cwd):
    """The sample log: every line is one main.cc prints (its MicroPrintf formats, %d a number)."""
    source = (REPO / "pea_keras/tflite/micro/main.cc").read_text()
    formats = ["".join(re.findall(r'"((?:[^"\\]|\\.)*)"', call)) for call in
               re.findall(r'MicroPrintf\(((?:\s*"(?:[^"\\]|\\.)*")+)', source)]
    patterns = [re.escape(f).replace("%d", "-?[0-9]+").replace("%s", ".*") for f in formats]
    for line in log.strip().splitlines():
        assert any(re.fullmatch(p, line) for p in patterns), line


def needs_tflm(script, cwd):
    pytest.skip("builds TensorFlow Lite Micro: needs its checkout; the run as written is in docs/results/LOG.md")


def training(script, cwd):
    """The training block but its --resume line (tested on a run made for it, below); the folder
    of photos is a small one of two classes made here."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, tint in (("cats", (200, 60, 60)), ("dogs", (60, 60, 200))):
        (cwd / "photos" / label).mkdir(parents=True)
        for i in range(24):
            pixels = np.clip(rng.normal(tint, 40, (40, 40, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(cwd / "photos" / label / f"{i}.png")
    lines = [line for line in script.splitlines() if "--resume" not in line]
    shell("\n".join(lines).replace("folder:/data/photos", "folder:photos"), cwd)


# What the README's Python snippets leave to the user: a wrapped digits CNN at alpha 1, its data.
SNIPPET_PRELUDE = """
    import keras
    import numpy as np
    import pea_keras
    import tensorflow as tf
    from sklearn.datasets import load_digits

    _d = load_digits()
    x, y = (_d.images[..., None] / 16.0).astype("float32")[:256], _d.target[:256]
    _i = keras.Input((8, 8, 1))
    _h = keras.layers.Conv2D(8, 3, activation="relu")(_i)
    model = pea_keras.wrap(keras.Model(_i, keras.layers.Dense(10)(keras.layers.Flatten()(_h))))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer, loss_fn = keras.optimizers.Adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    total_steps = 8

    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
"""


def snippet(code, cwd, before="", after=""):
    program = textwrap.dedent(SNIPPET_PRELUDE) + before + textwrap.dedent(code) + after
    result = run("python", "-c", program, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def custom_loop(code, cwd):
    """The custom training loop: alpha follows the schedule to 1, no "without PEAScheduler" warning."""
    out = snippet(code, cwd, after="\nprint([layer.alpha_value for layer in pea_keras.pea_layers(model)])")
    assert out.strip().splitlines()[-1] == "[1.0]"


def distillation_snippet(code, cwd):
    """Self-distillation on the snippets' data: the student ends at alpha 1 and strips to ReLU."""
    out = snippet(code, cwd, before="keras_model = pea_keras.strip(model, force=True)\n",
                  after="\nprint(len(pea_keras.pea_layers(relu_model)), "
                        "pea_keras.pea_layers(trainer.student)[0].alpha_value)")
    assert out.strip().splitlines()[-1] == "0 1.0"


def keras_export(code, cwd):
    """Keras' own export with the full-int8 settings, on the snippets' model at alpha 1: the file
    passes `pea-tflite check --int8`."""
    snippet(code, cwd, before="pea_keras.set_alpha(model, 1.0)  # Trained to the end of its schedule.\n")
    result = pea_tflite("check", "model_int8.tflite", "--int8", cwd=cwd)
    assert (result.returncode, result.stdout) == (0, "model_int8.tflite: ReLU-only int8\n"), result.stderr


def pretrained(code, cwd):
    """The pretrained recipe on an EfficientNetB0 of random weights at 32 px (no download): the saved
    network has ReLU and ReLU6 (the gates) activations only, and the final softmax."""
    code = code.replace('weights="imagenet"', 'weights=None, input_shape=(32, 32, 3), classes=10')
    check = ("\nm = pea_keras.load_model('efficientnet_relu.keras')\n"
             "print(sorted({type(l).__name__ for l in m.layers if type(l).__name__ in ('ReLU', 'PEALayer')}),"
             " sorted({str(l.max_value) for l in m.layers if type(l).__name__ == 'ReLU'}),"
             " sorted({str(l.get_config().get('activation')) for l in m.layers} - {'None', 'linear'}))")
    result = run("python", "-c", textwrap.dedent(code) + check, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "['ReLU'] ['6.0', 'None'] ['relu', 'softmax']", result.stdout


def relufy_runs(script, cwd):
    """train.py --mode relufy on a small SiLU network of digits saved where the commands expect it."""
    code = textwrap.dedent("""
        import keras
        i = keras.Input((32, 32, 1))
        h = keras.layers.Conv2D(8, 3, strides=2, activation="silu")(i)
        h = keras.layers.Activation("silu")(keras.layers.BatchNormalization()(h))
        keras.Model(i, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))).save("my_silu_model.keras")
    """)
    fresh_python(code, cwd=cwd)
    shell(script, cwd)
    for name in ("my_silu_model_relufy_digits", "longer"):
        assert (cwd / "runs" / name / "metrics.json").is_file(), name


def compiled_elsewhere(script, cwd):
    pytest.skip("compiled against a kit's headers (and a TensorFlow Lite Micro checkout's with PEA_TFLM_ROOT) "
                "in test_tflite_micro_kit.py")


def run_by_measured(script, cwd):
    pytest.skip("make_mnv2.py: runs as part of the measurement block before it")


# Each block, by its first line, and how it runs.
RUNNERS = {
    "pip install -e . && python train.py --arch mobilenet_v2": quick_start,
    "import keras          # or: import tf_keras as keras — both flavours are first class": library,
    "import keras": pretrained,
    "python train.py --mode relufy --init_from my_silu_model.keras          # its recipe: 3 epochs, lr 2e-3, ...":
        relufy_runs,
    "pea-tflite convert runs/mobilenet_v2_pea_digits/pea_model.keras -o tflite/model.tflite --calib digits":
        after_quick_start,
    "python train.py --arch mobilenet_v2                       # PEA (SiLU) on digits, width 0.35, ~2.5 min on 2 "
    "CPU cores": training,
    "  schedule = pea_keras.schedules.default(total_steps)": custom_loop,
    "  trainer = pea_keras.distillation.distiller(pea_keras.wrap(keras_model), \"self\")": distillation_snippet,
    "import tensorflow as tf": keras_export,
    "TF_CONFIG='{\"cluster\": {\"worker\": [\"127.0.0.1:20001\", \"127.0.0.1:20002\"]}, \"task\": {\"type\": "
    "\"worker\", \"index\": 0}}' \\": multiworker,
    "python train.py --task segmentation                       # Lite R-ASPP MobileNetV2 on digit scenes, mIoU":
        shell,
    "python train.py --task segmentation --dataset cityscapes --data_dir <data_dir> --image_size 512 \\": shell,
    "python train.py --arch mobilenet_v2 --width 1.0 --dataset imagenet2012 --data_dir /data/tfds \\": shell,
    "pea-tflite convert runs/model.keras -o tflite/model.tflite           # micro preset": kit_commands,
    "KIT=../pea_keras/tflite                     # the kit's folder (here: tflite/ of a pea_keras checkout)":
        self_test_folder,
    "PEA_SELFTEST_DIR := $(TENSORFLOW_ROOT)tensorflow/lite/micro/examples/pea_selftest": lambda script, cwd:
        pytest.skip("Makefile.inc: read by make in the run of the block before it"),
    "make -f tensorflow/lite/micro/tools/make/Makefile -j4 run_pea_selftest": needs_tflm,
    "sample 2: 10 outputs bit-exact": self_test_log,
    "make -f tensorflow/lite/micro/tools/make/Makefile -j4 TARGET=cortex_m_generic TARGET_ARCH=cortex-m4 \\":
        tflm_flags,
    "wrote tflite/m1st_model_v2_model_data.cc": printed_kit_names,
    "#include <stdint.h>": compiled_elsewhere,
    "python make_mnv2.py        # builds mnv2.keras, calib.npy (100 of the training images), mnv2_float.tflite":
        measured,
    "import numpy as np, keras, tensorflow as tf": run_by_measured,
}
CASES = [(doc, line, text) for doc in DOCS for line, _, text in blocks(doc)]


@pytest.mark.parametrize("doc, line, text", CASES, ids=[f"{doc}:{line}" for doc, line, _ in CASES])
def test_documented_block_runs(doc, line, text, tmp_path):
    first = text.splitlines()[0]
    assert first in RUNNERS, f"{doc}:{line}: a new block; give it a runner in tests/test_docs.py"
    RUNNERS[first](text, tmp_path)


def test_the_resume_line_runs(tmp_path):
    """The training block's `--resume` line (left out of that block's run), on a run made for it."""
    line = next(line for _, _, text in blocks("README.md") for line in text.splitlines() if "--resume" in line)
    resume_line(line, tmp_path)


# Top-1 points between two runs of the quick start with the same seed and versions (README says so):
# 93.89 to 95.83 % seen on its 360 test digits.
QUICK_START_NOISE = 2.0


def _figures(text):
    """({row: (top-1 %, file size)}, [device lines]) of a quick-start summary as printed."""
    rows = {m[1]: (float(m[2]), m[3]) for m in re.finditer(
        r"^ *(pea model \(float\)|stripped ReLU \(float\)|int8 TFLite \(LiteRT\)) +([\d.]+) % +(\S+ \S+) *$",
        text, re.M)}
    device = re.findall(r"^ *(on a microcontroller: .*|\d+ [KM]B flash / .*?) *$", text, re.M)
    return rows, device


def test_the_quick_start_prints_the_figures_of_the_readme(tmp_path):
    """The quick start as written (not shortened) prints README's table: top-1 within the noise between
    runs, the file sizes and device lines exactly; the byte counts quoted after it are its metrics.json's."""
    result = run(sys.executable, REPO / "train.py", "--arch", "mobilenet_v2", "--output_dir", "run",
                 "--tflite_dir", "tflite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    readme = (REPO / "README.md").read_text()
    documented = _figures(readme[readme.index("## Quick start"):readme.index("Every run ends this way")])
    printed = _figures(result.stdout)
    assert len(documented[0]) == 3 and len(documented[1]) == 4, documented
    sizes = [{row: size for row, (_, size) in figures[0].items()} for figures in (printed, documented)]
    assert sizes[0] == sizes[1]
    for row, (top1, _) in documented[0].items():
        assert abs(printed[0][row][0] - top1) <= QUICK_START_NOISE, (row, printed[0][row][0], top1)
    assert printed[1] == documented[1]
    device = json.loads((tmp_path / "run" / "metrics.json").read_text())["tflite"]["device"]
    prose = " ".join(readme.split())
    assert f"flash is the int8 file ({device['flash_bytes']:,} B here)" in prose
    assert f"tensor arena ({device['arena_measured_bytes']:,} B measured by TFLite Micro" in prose
