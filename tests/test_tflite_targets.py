"""Deploy targets come from one registry (pea_keras.tflite.targets): a target registered by a plugin
module (PEA_TFLITE_TARGETS) is a --target choice with its own option, and converts end to end through
the installed console script."""
import pytest
from fresh import fresh_python, pea_tflite
from test_tflite_cli import _files, models  # noqa: F401 (models: the fixture)

PLUGIN = {"PEA_TFLITE_TARGETS": "fake_target"}


def test_a_plugin_target_is_a_choice_with_its_option(tmp_path):
    code, stdout, _ = pea_tflite("convert", "--help", **PLUGIN)
    text = " ".join(stdout.split())  # Unwrapped.
    assert code == 0 and "; fake: int8 I/O, LiteRT load test, OUT_fake.tflite. Explicit flags" in text
    assert "--fake_level N fake target: trailers appended" in text
    code, stdout, stderr = pea_tflite("convert", "m.keras", "-o", tmp_path / "m.tflite", "--fake_level", "2", **PLUGIN)
    assert (code, stdout) == (1, "")
    assert stderr == "pea-tflite: error: --fake_level: only for a fake --target (fake)\n"
    code, _, stderr = pea_tflite("convert", "m.keras", "-o", tmp_path / "m.tflite", "--target", "fake")
    assert code == 2 and "invalid choice: 'fake'" in stderr  # Not registered without the plugin.
    assert _files(tmp_path) == []


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path):
    code, stdout, stderr = pea_tflite("convert", "m.keras", "-o", tmp_path / "m.tflite",
                                      PEA_TFLITE_TARGETS="fake_target, missing_target")
    assert (code, stdout) == (1, "")
    assert stderr == ("pea-tflite: error: PEA_TFLITE_TARGETS: cannot import the target module missing_target "
                      "(ModuleNotFoundError: No module named 'missing_target'): put it on PYTHONPATH or remove it "
                      "from the variable\n")
    (tmp_path / "broken_target.py").write_text("raise RuntimeError('needs the vendor SDK 3.2')\n")
    code, stdout, stderr = pea_tflite("check", "m.tflite", path=[tmp_path], PEA_TFLITE_TARGETS="broken_target")
    assert (code, stdout) == (1, "")
    assert stderr == ("pea-tflite: error: PEA_TFLITE_TARGETS: cannot import the target module broken_target "
                      "(RuntimeError: needs the vendor SDK 3.2): fix it or remove it from the variable\n")


@pytest.mark.slow
def test_a_plugin_target_converts_end_to_end(models, tmp_path):  # noqa: F811
    out = tmp_path / "m.tflite"
    code, stdout, stderr = pea_tflite("convert", models / "plain.keras", "-o", out, "--calib", models / "calib.npy",
                                      "--target", "fake", "--fake_level", "2", **PLUGIN)
    assert (code, stderr) == (0, "")
    assert _files(tmp_path) == ["m.tflite", "m_fake.tflite"]  # No kit: the target keeps none next to the file.
    compiled = (tmp_path / "m_fake.tflite").read_bytes()
    assert compiled == out.read_bytes() + b"\0fake-npu" * 2
    assert f"wrote {tmp_path / 'm_fake.tflite'}: {len(compiled)} bytes for the fake NPU" in stdout.splitlines()
    assert "load test passed: litert" in stdout
    fresh_python("""
        import sys
        from pea_keras.tflite import relu_only_violations
        assert relu_only_violations(sys.argv[1], int8=True) == []
    """, out)
