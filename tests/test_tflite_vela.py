"""`pea-tflite convert --target ethos-u...`: the proven int8 file, compiled by Arm's Vela, with its
kit, placement and estimates; refusals before any work; check/inspect/bench/run on Vela's files.
Through the installed console script, in fresh processes."""
import pathlib
import re
import shutil
import subprocess
import textwrap

import pytest
from fresh import fresh_python, pea_tflite

from pea_keras.tflite import inspect, relu_only_violations, targets, vela

MODELS = """
    import sys
    import keras, numpy as np
    L = keras.layers
    out = sys.argv[1]
    i = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(i)
    keras.Model(i, L.Dense(3)(L.GlobalAveragePooling2D()(x))).save(f"{out}/npu.keras")
    # Taking channels in a new order is linear (GATHER at constant indices), and the Ethos-U55 has no
    # GATHER: it stays on the CPU.
    y = keras.ops.take(x, [2, 0, 1, 3], axis=-1)
    keras.Model(i, L.Dense(3)(L.GlobalAveragePooling2D()(y))).save(f"{out}/gather.keras")
    np.save(f"{out}/calib.npy", np.random.default_rng(0).random((100, 8, 8, 1), dtype=np.float32))
"""
KIT = ["_model_data.cc", "_model_data.h", "_model_settings.h", "_op_resolver.h", "_test_data.cc",
       "_test_data.h"]


def one_error(result, code=1):
    assert result.returncode == code, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pea-tflite: error: "), result.stderr
    return result.stderr[len("pea-tflite: error: "):-1]


def files_in(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    fresh_python(MODELS, out)
    return out


@pytest.fixture(scope="module")
def gather(models, tmp_path_factory):
    """The GATHER model converted for the Ethos-U55-128 with Vela's default system config."""
    out = tmp_path_factory.mktemp("u55")
    result = pea_tflite("convert", models / "gather.keras", "-o", out / "g.tflite", "--target", "ethos-u55-128",
                        "--calib", models / "calib.npy")
    return out, result


def test_the_accelerators_are_the_ones_vela_knows():
    from ethosu.vela.architecture_features import Accelerator

    assert tuple(Accelerator.member_list()) == vela.ACCELERATORS
    assert [t for t in targets.names() if t.startswith("ethos-u")] == list(vela.ACCELERATORS)


def test_an_unknown_accelerator_is_refused_by_the_parser(tmp_path):
    result = pea_tflite("convert", "m.keras", "-o", tmp_path / "m.tflite", "--target", "ethos-u55-100")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "pea-tflite: error: argument --target: invalid choice: 'ethos-u55-100' (choose from 'micro', 'phone', "
        + ", ".join(f"'{name}'" for name in vela.ACCELERATORS) + ")")
    assert files_in(tmp_path) == []


def test_without_vela_the_target_names_the_extra(tmp_path):
    """An ``ethosu`` package without ``vela`` first on the path hides the installed Vela."""
    (tmp_path / "shadow" / "ethosu").mkdir(parents=True)
    (tmp_path / "shadow" / "ethosu" / "__init__.py").write_text("")
    result = pea_tflite("convert", "missing.keras", "-o", tmp_path / "m.tflite", "--target", "ethos-u65-256",
                        path=[tmp_path / "shadow"])
    assert one_error(result) == ("--target ethos-u65-256 needs Arm's Vela compiler (the ethos-u-vela package): "
                                 "pip install 'pea_keras[npu]'")
    assert files_in(tmp_path) == ["shadow"]


@pytest.mark.parametrize("args, message", [
    (["--target", "micro", "--system_config", "Ethos_U55_High_End_Embedded", "--require_npu"],
     "--system_config, --require_npu: only for an Ethos-U --target (ethos-u55-32, ethos-u55-64, "),
    (["--target", "ethos-u55-128", "--system_config", "Nope"],
     "--system_config Nope: Arm/vela.ini has no [System_Config.Nope]; it has Ethos_U55_Deep_Embedded, "),
    (["--target", "ethos-u55-128", "--memory_mode", "Nope"],
     "--memory_mode Nope: Arm/vela.ini has no [Memory_Mode.Nope]; it has Sram_Only, Shared_Sram, "),
    (["--target", "ethos-u55-128", "--vela_config", "board.ini"],
     "--vela_config board.ini: no such file (nor one of Vela's own: Arm/vela.ini)"),
    (["--target", "ethos-u55-128", "--vela_config", "board.cfg"],
     "--vela_config board.cfg: Vela reads only .ini files"),
])
def test_vela_settings_are_refused_before_any_work(tmp_path, args, message):
    result = pea_tflite("convert", "missing.keras", "-o", tmp_path / "m.tflite", *args)
    assert one_error(result).startswith(message)
    assert files_in(tmp_path) == []


@pytest.mark.slow
def test_convert_writes_the_vela_file_its_kit_and_the_placement(gather):
    out, result = gather
    assert result.returncode == 0, result.stderr
    assert files_in(out) == sorted(["g.tflite", "g_vela.tflite", *(f"g_vela{s}" for s in KIT)])
    assert relu_only_violations(out / "g.tflite", int8=True) == []
    assert result.stderr == ("pea-tflite: warning: ethos-u55-128: 1 operator(s) run on the CPU, not the NPU: "
                             "GATHER x1 (Unsupported opType); replace them in the model to run it all on the NPU\n")
    lines = result.stdout.splitlines()
    at = lines.index(next(line for line in lines if line.startswith(f"wrote {out}/g_vela.tflite: ")))
    assert lines[at].endswith(" bytes, Vela 5.2.0 for ethos-u55-128")
    assert lines[at + 1].startswith("  placement: 2 NPU command stream(s) (CUSTOM:ethos-u), CPU fallback: GATHER x1 "
                                    "(Vela: ")
    assert re.fullmatch(r"  estimated by Vela's performance model \(not measured\): \d+ cycles = [\d.]+ us per "
                        r"inference at 500 MHz; memory used: SRAM [\d.]+ KiB, off-chip flash [\d.]+ KiB", lines[at + 2])
    assert lines[at + 3] == ("  system config Ethos_U55_High_End_Embedded, memory mode Shared_Sram (from Arm/vela.ini; "
                             "Vela's default for ethos-u55-128 where not given: pass --vela_config, --system_config "
                             "and --memory_mode for your board)")
    placed = vela.arena_bytes((out / "g_vela.tflite").read_bytes())
    assert lines[at + 4] == (f"  TensorFlow Lite Micro tensor arena: {placed} bytes placed by Vela (NPU scratch and "
                             "CPU tensors)")
    info = inspect(out / "g_vela.tflite")
    assert [op.type for op in info.operators] == ["CUSTOM:ethos-u", "GATHER", "CUSTOM:ethos-u"]


@pytest.mark.slow
def test_the_kit_is_the_vela_file_s(gather):
    out, _ = gather
    resolver = (out / "g_vela_op_resolver.h").read_text()
    assert re.findall(r"resolver\.(\w+)\(", resolver) == ["AddEthosU", "AddGather"]
    assert "constexpr int kNumOps = 2;" in resolver
    data = (out / "g_vela.tflite").read_bytes()
    array = (out / "g_vela_model_data.cc").read_text()
    assert f"const unsigned int g_g_vela_model_data_size = {len(data)};" in array
    assert bytes(int(b, 16) for b in re.findall(r"0x[0-9a-f]{2}", array)) == data
    settings = (out / "g_vela_model_settings.h").read_text()
    assert f"constexpr int kArenaMeasuredBytes = {vela.arena_bytes(data)};" in settings
    assert "bytes placed by Vela" in settings and f"constexpr int kModelBytes = {len(data)};" in settings
    assert "on the int8 file Vela compiled" in (out / "g_vela_test_data.h").read_text()


@pytest.mark.slow
def test_the_kit_s_data_compile_and_its_golden_outputs_are_the_int8_file_s(gather, tmp_path):
    """Built with only the C++ compiler: the array is the Vela file; the golden outputs are what
    TensorFlow Lite Micro computes on the proven int8 file for the golden inputs."""
    import numpy as np

    from pea_keras.tflite.runtimes import micro_run

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++/c++) on this machine")
    out, _ = gather
    driver = tmp_path / "driver.cc"
    driver.write_text(textwrap.dedent("""
        #include <stdio.h>
        #include "g_vela_model_data.h"
        #include "g_vela_test_data.h"
        int main() {
          fwrite(g_g_vela_model_data, 1, g_g_vela_model_data_size, stdout);
          fwrite(g_vela_model::kTestInputs, 1, sizeof(g_vela_model::kTestInputs), stdout);
          fwrite(g_vela_model::kTestOutputs, 1, sizeof(g_vela_model::kTestOutputs), stdout);
          return 0;
        }
    """))
    objects = []
    for source in (out / "g_vela_model_data.cc", out / "g_vela_test_data.cc", driver):
        objects.append(str(tmp_path / (source.name + ".o")))
        subprocess.run([compiler, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", str(out), "-c", str(source),
                        "-o", objects[-1]], check=True, capture_output=True)
    subprocess.run([compiler, *objects, "-o", str(tmp_path / "driver")], check=True)
    printed = subprocess.run([str(tmp_path / "driver")], capture_output=True, check=True).stdout
    data = (out / "g_vela.tflite").read_bytes()
    assert printed[:len(data)] == data
    golden = np.frombuffer(printed[len(data):], np.int8)
    inputs, outputs = golden[:3 * 64].reshape(3, 8, 8, 1), golden[3 * 64:].reshape(3, 3)
    assert np.array_equal(micro_run(out / "g.tflite", inputs)[0][0].reshape(3, 3), outputs)


@pytest.mark.slow
def test_check_inspect_bench_and_run_say_what_a_vela_file_is(gather):
    out, _ = gather
    path = out / "g_vela.tflite"
    assert one_error(pea_tflite("check", path, "--int8")) == (
        f"{path}: Ethos-U file compiled by Vela: its CPU part (GATHER x1) is ReLU-only int8, but its 2 NPU command "
        "stream(s) (CUSTOM:ethos-u) cannot be read, so the file is not proven ReLU-only: check the int8 file Vela "
        "compiled (`pea-tflite convert --target ethos-u...` proves it before compiling)")
    placed = vela.arena_bytes(path.read_bytes())
    shown = pea_tflite("inspect", path)
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.splitlines()[-1] == (
        "Ethos-U file compiled by Vela: 2 CUSTOM:ethos-u operator(s) run NPU command streams (the layers inside "
        f"them are not in the file), 1 operator(s) run on the CPU (GATHER x1); tensor arena {placed} bytes "
        "placed by Vela; TensorFlow Lite Micro registers it with AddEthosU()")
    for verb, args in (("bench", ()), ("run", ("--data", "digits"))):
        assert one_error(pea_tflite(verb, path, *args)) == (
            f"{path}: Ethos-U file compiled by Vela: its NPU command streams run only on an Ethos-U NPU (TensorFlow "
            "Lite Micro with AddEthosU() and Arm's driver), which this machine has not: pea-tflite "
            f"{verb} the int8 file Vela compiled instead (for the NPU, `pea-tflite convert --target ethos-u...` "
            "prints Vela's estimates)")


@pytest.mark.slow
def test_a_board_s_config_and_a_network_all_on_the_npu(models, tmp_path):
    board = tmp_path / "board.ini"
    arm = pathlib.Path(vela._config_files_folder()) / "Arm" / "vela.ini"
    board.write_text(arm.read_text())
    result = pea_tflite("convert", models / "npu.keras", "-o", tmp_path / "n.tflite", "--target", "ethos-u85-256",
                        "--calib", models / "calib.npy", "--vela_config", board, "--system_config",
                        "Ethos_U85_SYS_Flash_High", "--memory_mode", "Shared_Sram", "--require_npu")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert f"  system config Ethos_U85_SYS_Flash_High, memory mode Shared_Sram (from {board})" in result.stdout
    assert "  placement: 1 NPU command stream(s) (CUSTOM:ethos-u), no CPU operators (Vela: " in result.stdout
    assert [op.type for op in inspect(tmp_path / "n_vela.tflite").operators] == ["CUSTOM:ethos-u"]


@pytest.mark.slow
def test_require_npu_refuses_a_cpu_fallback_and_writes_nothing(models, tmp_path):
    result = pea_tflite("convert", models / "gather.keras", "-o", tmp_path / "g.tflite", "--target", "ethos-u55-64",
                        "--calib", models / "calib.npy", "--require_npu")
    assert one_error(result) == ("ethos-u55-64: 1 operator(s) run on the CPU, not the NPU: GATHER x1 (Unsupported "
                                 "opType); replace them in the model to run it all on the NPU (--require_npu)")
    assert result.stdout == "" and files_in(tmp_path) == []


@pytest.mark.slow
def test_every_accelerator_compiles_the_proven_file(gather):
    out, _ = gather
    for accelerator in vela.ACCELERATORS:
        compiled = vela.compile_file(out / "g.tflite", vela.Config(accelerator))
        assert compiled.cycles > 0 and compiled.arena_bytes > 0, accelerator
        assert compiled.npu_operators >= 1 and set(compiled.cpu_operators) <= {"GATHER"}, accelerator


def test_a_vela_crash_is_one_line(tmp_path, monkeypatch):
    """A Vela that dies by a signal (its native compiler) ends as one error line naming it."""
    fake = tmp_path / "_vela_worker.py"
    fake.write_text(textwrap.dedent("""
        import os, signal, sys
        print("compiling", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    """))
    monkeypatch.setattr(vela, "_WORKER", str(fake))
    with pytest.raises(vela.TFLiteError) as e:
        vela.compile_file(_smallest_tflite(), vela.Config("ethos-u55-128"))
    assert str(e.value) == "Vela crashed (SIGSEGV) compiling for ethos-u55-128: compiling"


def _smallest_tflite():
    """A one-operator int8 TFLite file, built with the flatbuffer schema (no converter)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.RELU
    model.operatorCodes = [code]
    tensors = []
    for name in (b"x", b"y"):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, [1, 4], s.TensorType.INT8, 0
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [1], [op]
    model.subgraphs = [sg]
    model.buffers = [s.BufferT()]
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
