"""A training mode added from outside: one `modes.Mode` object, registered as an entry point of
the group `pea_keras.modes` by a package on the path, is a `train.py --mode` choice that trains."""
import json
import textwrap

import pytest
from train_cli import run_script

from pea_keras.tflite import relu_only_violations

PLUGIN = textwrap.dedent('''
    from pea_keras import schedules
    from pea_keras.training import modes


    class Halfway(modes.Mode):
        name = "fake"
        help = "alpha held at 0.5, then stripped by force"
        defaults = {"pea_end": 0.5}
        ends_below_one = True

        def schedule(self, config, total_steps):
            return schedules.Constant(0.5)


    FAKE = Halfway()
''')


def installed_plugin(folder):
    """What `pip install` of a package declaring `fake = "fake_mode:FAKE"` in the group leaves:
    the module and its metadata; returns the folder to search first."""
    (folder / "fake_mode.py").write_text(PLUGIN)
    info = folder / "fake_mode-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-mode\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pea_keras.modes]\nfake = fake_mode:FAKE\n")
    return [folder]


def test_a_registered_mode_is_a_choice_with_its_help(tmp_path):
    result = run_script("train.py", "--helpshort", path=installed_plugin(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fake: alpha held at 0.5, then stripped by force." in " ".join(result.stdout.split())
    assert "<pea|relu|surrogate|novel|relufy|fake>" in result.stdout


@pytest.mark.parametrize("code, problem", [
    ("raise ImportError('No module named torchvision')", "does not load (ImportError: No module named torchvision)"),
    ("FAKE = 'fake'", "is not a Mode named 'fake' that is not one of pea, relu, surrogate, novel, relufy"),
])
def test_a_broken_registered_mode_is_left_out_with_one_warning(tmp_path, code, problem):
    """Another package's broken mode never stops train.py: the built-in modes work, the warning names
    the entry point and what is wrong, and choosing the broken mode is refused in one line."""
    path = installed_plugin(tmp_path)
    (tmp_path / "fake_mode.py").write_text(code + "\n")
    result = run_script("train.py", "--helpshort", path=path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "<pea|relu|surrogate|novel|relufy>" in result.stdout
    warning = (f"train.py: warning: mode fake (fake_mode:FAKE, entry point group pea_keras.modes) {problem}: left "
               "out; fix or uninstall the package that declares it")
    assert result.stderr.splitlines() == [warning]
    result = run_script("train.py", "--mode=fake", path=path)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        warning, "train.py: error: flag --mode=fake: value should be one of <pea|relu|surrogate|novel|relufy> "
                 "(see --helpshort)"]


@pytest.mark.slow
def test_a_registered_mode_trains_and_deploys_end_to_end(tmp_path):
    """The mode's schedule holds alpha at 0.5 and its default sets --pea_end; the force-stripped
    network is exported ReLU-only, with no warning."""
    out, tfl = tmp_path / "run", tmp_path / "tflite"
    result = run_script("train.py", "--arch=tiny", "--mode=fake", "--epochs=1", "--steps_per_epoch=4",
                        "--batch_size=16", "--calibration_examples=16", "--tflite_eval_examples=16", "--verbose=0",
                        f"--output_dir={out}", f"--tflite_dir={tfl}", path=installed_plugin(tmp_path))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert (m["mode"], m["flags"]["pea_end"], m["alpha_final"]) == ("fake", 0.5, 0.5)
    assert m["schedule"] == {"class_name": "Constant", "config": {"value": 0.5}}
    assert m["alpha_trace"]["alpha"] == [0.5] * 4 and m["warnings"] == []
    assert set(m["top1"]) == {"pea", "validation", "stripped", "int8"}
    assert relu_only_violations(str(tfl / "run_int8.tflite"), int8=True) == []


def test_an_unknown_mode_or_task_is_one_line_naming_the_setting_and_the_choices():
    from pea_keras.errors import SettingError
    from pea_keras.training import modes, tasks

    with pytest.raises(SettingError, match=r"^mode must be one of pea, relu, surrogate, novel, relufy, got 'bogus'$"):
        modes.get("bogus")
    with pytest.raises(SettingError, match=r"^task must be one of classification, segmentation, got 'bogus'$"):
        tasks.get("bogus")
