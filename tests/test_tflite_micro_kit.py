"""The TFLite Micro kit: the array is the file, the resolver registers exactly the file's ops,
the settings are the interpreter's, the golden outputs are what TFLM computes, two models share a
folder (and a program), the data files compile alone and the packaged micro/main.cc uses only kit names."""
import os
import pathlib
import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from fresh import HANG_S, REPO, cli_run, fresh_python, pea_tflite

from pea_keras.tflite import TFLiteError, convert, inspect, micro_kit, op_resolver, predict, quantize, runtimes

MAIN_CC = os.path.join(REPO, "pea_keras", "tflite", "micro", "main.cc")
# MicroMutableOpResolver's method for each op of the test model (TFLM's names, written out here).
METHODS = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "ADD": "AddAdd",
           "MEAN": "AddMean", "FULLY_CONNECTED": "AddFullyConnected", "SOFTMAX": "AddSoftmax",
           "RESHAPE": "AddReshape", "MAX_POOL_2D": "AddMaxPool2D"}


def eight_op_model():
    """Every op of METHODS once at least: conv, pool, depthwise, two adds, mean, reshape, dense."""
    import tf_keras as k

    k.utils.set_random_seed(0)
    L = k.layers
    i = k.Input((8, 8, 1))
    p = L.MaxPooling2D()(L.Conv2D(4, 3, padding="same", activation="relu")(i))
    a = L.Add()([p, L.DepthwiseConv2D(3, padding="same", activation="relu")(p)])
    features = L.Add()([L.GlobalAveragePooling2D()(a), L.Dense(4)(L.Flatten()(p))])
    return k.Model(i, L.Dense(10, activation="softmax")(features))


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Kit of the eight-op model ('tiny8'), then a second model's kit ('dense') in the same folder,
    written by ``convert``; returns the folder, both files, the first kit's bytes before the
    second was written, and the calibration samples."""
    import tf_keras as k

    folder = tmp_path_factory.mktemp("kit")
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    path = folder / "tiny8.tflite"
    path.write_bytes(quantize(eight_op_model(), x))
    first = micro_kit.write_micro_kit(path, folder, "tiny8", x[:3])
    before = {p: pathlib.Path(p).read_bytes() for p in first}
    dense = k.Sequential([k.Input((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(6, activation="relu"),
                          k.layers.Dense(3)])
    conv = convert(dense, folder / "dense.tflite", x, c_array_dir=folder, golden_samples=2)
    return folder, path, folder / "dense.tflite", before, x, conv


def read(folder, name):
    return (folder / name).read_text()


def c_numbers(text, array):
    """Every number in the initializer of ``array`` (hex bytes or decimal)."""
    body = re.search(re.escape(array) + r"\[[^=]*= \{(.*?)\n\};", text, re.S).group(1)
    return [int(v, 16) if v.startswith("0x") else float(v.rstrip("f")) if "." in v or "e" in v
            else int(v) for v in re.findall(r"0x[0-9a-f]{2}|-?[\d.]+(?:e-?\d+)?f?", body)]


def constant(text, name):
    value = re.search(rf"constexpr \w+ {name}(?:\[\w+\])? = ([^;]+);", text).group(1)
    if value.startswith("{"):
        return [int(v) for v in value.strip("{}").split(",")]
    return float(value.rstrip("f")) if "." in value or "e" in value else int(value)


def test_the_array_is_the_file(kit):
    folder, path, _, _, _, _ = kit
    cc = read(folder, "tiny8_model_data.cc")
    assert "alignas(16) const unsigned char g_tiny8_model_data[] = {" in cc
    assert bytes(c_numbers(cc, "g_tiny8_model_data")) == path.read_bytes()
    assert f"const unsigned int g_tiny8_model_data_size = {path.stat().st_size};" in cc
    h = read(folder, "tiny8_model_data.h")
    assert "extern const unsigned char g_tiny8_model_data[];" in h and '#include "tiny8_model_data.h"' in cc


def test_resolver_registers_exactly_the_ops_inspect_reports(kit, capsys):
    folder, path, _, _, _, _ = kit
    ops = set(inspect(path).op_histogram())
    assert ops == set(METHODS)
    header = read(folder, "tiny8_op_resolver.h")
    calls = re.findall(r"resolver\.(Add\w+)\(([^)]*\)?)\)", header)
    assert sorted(m for m, _ in calls) == sorted(METHODS[o] for o in ops)
    assert f"constexpr int kNumOps = {len(ops)};" in header
    assert "using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;" in header
    # Every instance is int8, so the int8-only kernels are registered where TFLM has them.
    registered = dict(calls)
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SOFTMAX", "MAX_POOL_2D"):
        assert registered[METHODS[op]] == f"tflite::Register_{op}_INT8()"
    assert registered["AddMean"] == registered["AddReshape"] == ""
    # `inspect --resolver` prints the same header.
    assert cli_run(capsys, "inspect", path, "--resolver")[:2] == (0, header)


def test_int8_kernels_only_where_every_instance_is_int8(kit):
    import dataclasses

    _, path, _, _, _, _ = kit
    info = inspect(path)
    softmax = next(op for op in info.operators if op.type == "SOFTMAX")
    conv = next(op for op in info.operators if op.type == "CONV_2D")
    tensors = list(info.tensors)
    tensors[softmax.outputs[0]] = dataclasses.replace(tensors[softmax.outputs[0]], dtype="INT16")
    tensors[conv.inputs[1]] = dataclasses.replace(tensors[conv.inputs[1]], dtype="INT4")
    info.subgraphs[0] = (tensors, *info.subgraphs[0][1:])
    header = op_resolver.op_resolver_header(info, "mixed")
    assert "resolver.AddSoftmax()" in header and "resolver.AddConv2D()" in header
    assert "AddDepthwiseConv2D(tflite::Register_DEPTHWISE_CONV_2D_INT8())" in header
    assert '#include "tensorflow/lite/micro/kernels/softmax.h"' not in header
    float_io = quantize(eight_op_model(), np.random.default_rng(1).random((8, 8, 8, 1), np.float32),
                        io="float")
    header = op_resolver.op_resolver_header(inspect(float_io), "f")
    assert "AddQuantize()" in header and "AddDequantize()" in header
    assert "AddConv2D(tflite::Register_CONV_2D_INT8())" in header


def test_settings_match_the_interpreter(kit):
    folder, path, _, _, _, _ = kit
    text = read(folder, "tiny8_model_settings.h")
    inp, out = runtimes.io_details(path)
    for kind, d in (("Input", inp), ("Output", out)):
        assert constant(text, f"k{kind}Shape") == [int(v) for v in d["shape"]]
        assert constant(text, f"k{kind}Dims") == len(d["shape"])
        assert constant(text, f"k{kind}Size") == int(np.prod(d["shape"]))
        assert f"using {kind}Type = int8_t;" in text and d["dtype"] == np.int8
        assert np.float32(constant(text, f"k{kind}Scale")) == np.float32(d["quantization"][0])
        assert constant(text, f"k{kind}ZeroPoint") == d["quantization"][1]
    assert constant(text, "kNumClasses") == 10
    assert constant(text, "kModelBytes") == path.stat().st_size
    measured = constant(text, "kArenaMeasuredBytes")
    assert measured == runtimes.micro_arena_bytes(path)
    arena = constant(text, "kTensorArenaSize")
    assert arena % 16 == 0 and arena >= measured + 1024 and arena >= measured * 1.125


def test_golden_data_is_real_samples_and_what_tflm_computes(kit):
    folder, path, _, _, x, _ = kit
    cc = read(folder, "tiny8_test_data.cc")
    assert "constexpr int kNumTestSamples = 3;" in read(folder, "tiny8_test_data.h")
    q = np.array(c_numbers(cc, "kTestInputs"), np.int8).reshape(3, 8, 8, 1)
    (scale, zp) = runtimes.io_details(path)[0]["quantization"]
    assert np.array_equal(q, np.clip(np.round(x[:3] / scale + zp), -128, 127).astype(np.int8))
    golden = np.array(c_numbers(cc, "kTestOutputs"), np.int8).reshape(3, 10)
    fresh = predict(path, (q.astype(np.float32) - zp) * scale, runtime="micro", quantized=True)
    assert fresh.dtype == np.int8 and np.array_equal(golden, fresh)
    assert len({tuple(r) for r in golden}) > 1  # different samples, different scores


def test_two_models_share_a_folder(kit, tmp_path):
    folder, _, dense, before, _, conv = kit
    assert all(pathlib.Path(p).read_bytes() == data for p, data in before.items())  # untouched
    names = sorted(os.listdir(folder))
    for stem in ("tiny8", "dense"):
        assert [n for n in names if n.startswith(stem + "_")] == sorted(
            stem + s for s in micro_kit.KIT_SUFFIXES)
    assert [os.path.basename(p) for p in conv.c_array] == ["dense" + s for s in micro_kit.KIT_SUFFIXES]
    assert "namespace dense_model {" in read(folder, "dense_model_settings.h")
    assert "constexpr int kNumTestSamples = 2;" in read(folder, "dense_test_data.h")
    with pytest.raises(TFLiteError, match="dense_model_data.cc exists"):
        convert(dense, tmp_path / "dense.tflite", np.zeros((4, 8, 8, 1), np.float32), c_array_dir=folder)


def test_data_files_compile_alone_and_hold_the_data(kit, tmp_path):
    """Both models' data files, built together with only the C++ compiler (no TFLM headers),
    print back the model bytes and golden data."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++/c++) on this machine")
    folder, path, dense, _, _, _ = kit
    driver = tmp_path / "driver.cc"
    driver.write_text("\n".join([
        "#include <stdio.h>",
        *(f'#include "{s}_model_data.h"\n#include "{s}_test_data.h"' for s in ("tiny8", "dense")),
        "int main() {",
        "  fwrite(g_tiny8_model_data, 1, g_tiny8_model_data_size, stdout);",
        "  fwrite(g_dense_model_data, 1, g_dense_model_data_size, stdout);",
        "  fwrite(tiny8_model::kTestOutputs, 1, sizeof(tiny8_model::kTestOutputs), stdout);",
        "  return tiny8_model::kInputSize == 64 && dense_model::kOutputSize == 3 ? 0 : 1;",
        "}", ""]))
    objects = []
    for source in ("tiny8_model_data.cc", "tiny8_test_data.cc", "dense_model_data.cc",
                   "dense_test_data.cc", str(driver)):
        obj = tmp_path / (os.path.basename(source) + ".o")
        subprocess.run([compiler, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", str(folder), "-c",
                        str(folder / source), "-o", str(obj)], check=True, capture_output=True)
        objects.append(str(obj))
    subprocess.run([compiler, *objects, "-o", str(tmp_path / "driver")], check=True)
    out = subprocess.run([str(tmp_path / "driver")], capture_output=True, check=True).stdout
    golden = np.array(c_numbers(read(folder, "tiny8_test_data.cc"), "kTestOutputs"), np.int8)
    assert out == path.read_bytes() + dense.read_bytes() + golden.tobytes()


def test_example_uses_only_generated_names(kit):
    folder, _, _, _, _, _ = kit
    source = pathlib.Path(MAIN_CC).read_text()
    generated = "".join(read(folder, f"tiny8{s}") for s in micro_kit.KIT_SUFFIXES if s.endswith(".h"))
    includes = re.findall(r"#include PEA_KIT_FILE\((\w+)\)", source)
    assert sorted(f"tiny8{s}.h" for s in includes) == sorted(
        f"tiny8{s}" for s in micro_kit.KIT_SUFFIXES if s.endswith(".h"))
    assert set(re.findall(r'#include "([^"]+)"', source)) <= {
        "tensorflow/lite/micro/micro_interpreter.h", "tensorflow/lite/micro/micro_log.h",
        "tensorflow/lite/micro/micro_time.h", "tensorflow/lite/micro/system_setup.h",
        "tensorflow/lite/schema/schema_generated.h"}
    used = set(re.findall(r"\bkit::(\w+)", source))
    assert {"RegisterOps", "OpResolver", "kTensorArenaSize", "kNumInputs", "kGoldenInputs", "kNumOutputs",
            "kGoldenOutputs"} <= used
    for name in used:
        assert re.search(rf"(constexpr \w+|using|extern const \w+|TfLiteStatus|struct) {name}\b", generated), name
    assert "namespace kit = PEA_CAT(PEA_MODEL, _model);" in source
    assert "PEA_CAT(PEA_CAT(g_, PEA_MODEL), _model_data)" in source and "g_tiny8_model_data[]" in generated
    readme = pathlib.Path(REPO, "tflite", "README.md").read_text()
    assert "pea-tflite micro-main > main.cc" in readme and "-DPEA_MODEL=" in readme


def test_a_kit_never_replaces_another_files_kit_of_the_same_c_name(kit, tmp_path):
    """"oüt 1" and "oät 1" both spell o_t_1 in C: the second is refused, the first kit stays."""
    _, path, _, _, x, _ = kit
    first = micro_kit.write_micro_kit(path, tmp_path, "oüt 1", x[:1], source_name="oüt 1.tflite")
    before = {p: pathlib.Path(p).read_bytes() for p in first}
    with pytest.raises(TFLiteError, match=r"^the kit name o_t_1 of oät 1.tflite is taken in .* by the kit of "
                                          r"oüt 1.tflite: give the output a name that differs in letters"):
        micro_kit.write_micro_kit(path, tmp_path, "oät 1", x[:1], source_name="oät 1.tflite")
    assert {p: pathlib.Path(p).read_bytes() for p in first} == before
    micro_kit.write_micro_kit(path, tmp_path, "oüt 1", x[:1], source_name="oüt 1.tflite")  # Its own: fine.



# Stand-ins for the TFLite Micro headers that main.cc, the README's firmware function and a kit
# include: only the declarations they use, with TFLite Micro's names and signatures. With
# PEA_TFLM_ROOT set to a checkout (its Makefile's downloads in place), the real headers are used too.
_STAND_INS = {
    "tensorflow/lite/c/common.h": """
        #include <stddef.h>
        #include <stdint.h>
        typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
        typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3,
                       kTfLiteInt64 = 4, kTfLiteInt16 = 7, kTfLiteInt8 = 9 } TfLiteType;
        typedef struct {
          TfLiteType type;
          union { int8_t* int8; void* data; } data;
          size_t bytes;
        } TfLiteTensor;
        namespace tflite {
        struct TFLMRegistration {};
        struct Model { uint32_t version() const; };
        const Model* GetModel(const void* buf);
        class MicroOpResolver {};
        }  // namespace tflite""",
    "tensorflow/lite/micro/micro_interpreter.h": """
        #include "tensorflow/lite/c/common.h"
        namespace tflite {
        class MicroInterpreter {
         public:
          MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver,
                           uint8_t* tensor_arena, size_t tensor_arena_size);
          TfLiteStatus AllocateTensors();
          TfLiteStatus Invoke();
          TfLiteTensor* input(size_t index);
          TfLiteTensor* output(size_t index);
          size_t arena_used_bytes() const;
        };
        }  // namespace tflite""",
    "tensorflow/lite/micro/micro_log.h": "void MicroPrintf(const char* format, ...);",
    "tensorflow/lite/micro/micro_time.h": """
        #include <stdint.h>
        namespace tflite { uint32_t ticks_per_second(); uint32_t GetCurrentTimeTicks(); }""",
    "tensorflow/lite/micro/system_setup.h": "namespace tflite { void InitializeTarget(); }",
    "tensorflow/lite/schema/schema_generated.h": "#define TFLITE_SCHEMA_VERSION (3)",
}


def tflm_stand_ins(root):
    """The stand-in headers under `root`: those above, MicroMutableOpResolver with every method
    of tflm_api, and the kernel headers with their Register_<OP>_INT8() (both do nothing)."""
    from pea_keras.tflite import tflm_api

    methods = sorted({*tflm_api.BUILTIN_METHODS.values(), *tflm_api.CUSTOM_METHODS.values()})
    headers = dict(_STAND_INS)
    headers["tensorflow/lite/micro/micro_mutable_op_resolver.h"] = "\n".join([
        '#include "tensorflow/lite/c/common.h"', "namespace tflite {",
        "template <unsigned int tOpCount> class MicroMutableOpResolver : public MicroOpResolver {",
        " public:", *(f"  TfLiteStatus {m}(const TFLMRegistration& r = TFLMRegistration()) {{ return kTfLiteOk; }}"
          for m in methods),
        "};", "}  // namespace tflite"])
    for header in set(tflm_api.INT8_REGISTRATIONS.values()):
        ops = [op for op, h in tflm_api.INT8_REGISTRATIONS.items() if h == header]
        headers[f"tensorflow/lite/micro/kernels/{header}"] = "\n".join([
            '#include "tensorflow/lite/c/common.h"', "namespace tflite {",
            *(f"inline TFLMRegistration Register_{op}_INT8() {{ return TFLMRegistration(); }}" for op in ops),
            "}  // namespace tflite"])
    for path, text in headers.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("#pragma once\n" + textwrap.dedent(text).strip() + "\n")
    return root


def tflm_include_flags():
    """[(name, compiler flags)]: the stand-ins always, the real TFLite Micro headers of the
    PEA_TFLM_ROOT checkout when it is set (its TF_LITE_STATIC_MEMORY and C++17, as its Makefile)."""
    root = os.environ.get("PEA_TFLM_ROOT")
    if not root:
        return []
    downloads = pathlib.Path(root, "tensorflow/lite/micro/tools/make/downloads")
    return [("TFLite Micro", ["-std=c++17", "-DTF_LITE_STATIC_MEMORY", "-I", root,
                              *(f"-I{downloads / d}" for d in ("flatbuffers/include", "gemmlowp", "ruy"))])]


def firmware_function():
    """The README's "Using the kit in your firmware" block, and the stem it is written for."""
    readme = pathlib.Path(REPO, "tflite", "README.md").read_text()
    section = readme[readme.index("### Using the kit in your firmware"):]
    code = re.search(r"```cpp\n(.*?)```", section, re.S).group(1)
    return code, re.search(r"namespace kit = (\w+)_model;", code).group(1)


def test_main_and_the_firmware_function_compile_against_the_kit(kit, tmp_path):
    """main.cc (with -DPEA_MODEL) and the README's firmware function (a complete function, its
    stem replaced by the kit's) compile with the kit's headers, warnings as errors."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++/c++) on this machine")
    folder = kit[0]
    code, stem = firmware_function()
    assert stem == "tiny_pea_digits_int8"  # what `python train.py --arch tiny` writes
    (tmp_path / "firmware.cc").write_text(code.replace(stem, "tiny8"))
    stand_ins = tflm_stand_ins(tmp_path / "stand_in")
    for name, flags in [("stand-ins", ["-std=c++11", "-I", str(stand_ins)]), *tflm_include_flags()]:
        for source, extra in ((MAIN_CC, ["-DPEA_MODEL=tiny8"]), (tmp_path / "firmware.cc", [])):
            result = subprocess.run([compiler, *flags, *extra, *STRICT, "-I", str(folder), "-c", str(source), "-o",
                                     str(tmp_path / "out.o")], capture_output=True, text=True)
            assert result.returncode == 0, f"{source} with the {name}:\n{result.stderr[-3000:]}"
    missing_stem = subprocess.run([compiler, "-std=c++11", "-I", str(stand_ins), "-I", str(folder),
                                   "-fsyntax-only", MAIN_CC], capture_output=True, text=True)
    assert missing_stem.returncode != 0
    assert "Define PEA_MODEL as the kit's name that pea-tflite convert printed" in missing_stem.stderr


# A stand-in TFLite Micro to link main.cc with, for any kit (PEA_MODEL): the interpreter answers
# each golden input (all its tensors) with its golden outputs (the first byte of output 0 changed
# by CHANGE), the clock advances TICK_STEP per call at TICKS_PER_SECOND, and with DEBUG_LOG_HOOK
# the log goes only through a registered callback, as on cortex_m_generic.
_STAND_IN_LIBRARY = """
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#include STR(CAT(PEA_MODEL, _test_data).h)

namespace kit = CAT(PEA_MODEL, _model);
namespace {
alignas(16) uint8_t buffers[kit::kNumInputs + kit::kNumOutputs][4096];
TfLiteTensor inputs[kit::kNumInputs], outputs[kit::kNumOutputs];
uint32_t now = 0;
const uint8_t* Sample(const kit::GoldenTensor& golden, int s) {
  return static_cast<const uint8_t*>(golden.samples) + s * golden.sample_bytes;
}
}  // namespace

#ifdef DEBUG_LOG_HOOK
static void (*log_callback)(const char* s) = nullptr;
extern "C" void RegisterDebugLogCallback(void (*callback)(const char* s)) { log_callback = callback; }
#endif
void MicroPrintf(const char* format, ...) {
  char line[256];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof(line), format, args);
  va_end(args);
#ifdef DEBUG_LOG_HOOK
  if (log_callback != nullptr) {
    log_callback(line);
    log_callback("\\n");
  }
#else
  printf("%s\\n", line);
#endif
}

namespace tflite {
uint32_t ticks_per_second() { return TICKS_PER_SECOND; }
uint32_t GetCurrentTimeTicks() { return now += TICK_STEP; }
void InitializeTarget() {}
uint32_t Model::version() const { return TFLITE_SCHEMA_VERSION; }
const Model* GetModel(const void* buf) { return static_cast<const Model*>(buf); }
MicroInterpreter::MicroInterpreter(const Model*, const MicroOpResolver&, uint8_t*, size_t) {}
TfLiteStatus MicroInterpreter::AllocateTensors() {
  for (int i = 0; i < kit::kNumInputs + kit::kNumOutputs; ++i) {
    const bool in = i < kit::kNumInputs;
    TfLiteTensor& t = in ? inputs[i] : outputs[i - kit::kNumInputs];
    t.type = kTfLiteInt8;
    t.data.data = buffers[i];
    t.bytes = in ? kit::kGoldenInputs[i].sample_bytes : kit::kGoldenOutputs[i - kit::kNumInputs].sample_bytes;
  }
  return kTfLiteOk;
}
TfLiteStatus MicroInterpreter::Invoke() {
  for (int s = kit::kNumTestSamples - 1; s >= 0; --s) {
    bool same = true;
    for (int i = 0; i < kit::kNumInputs; ++i) {
      same = same && memcmp(inputs[i].data.data, Sample(kit::kGoldenInputs[i], s), inputs[i].bytes) == 0;
    }
    for (int o = 0; same && o < kit::kNumOutputs; ++o) {
      memcpy(outputs[o].data.data, Sample(kit::kGoldenOutputs[o], s), outputs[o].bytes);
    }
  }
  outputs[0].data.int8[0] = static_cast<int8_t>(outputs[0].data.int8[0] + CHANGE);
  return kTfLiteOk;
}
TfLiteTensor* MicroInterpreter::input(size_t index) { return &inputs[index]; }
TfLiteTensor* MicroInterpreter::output(size_t index) { return &outputs[index]; }
size_t MicroInterpreter::arena_used_bytes() const { return 4321; }
}  // namespace tflite
"""
# TFLite Micro's Makefile's warnings (its CC_WARNINGS at tflm_api.TFLM_COMMIT, -Wshadow as it adds for
# clang), as errors: main.cc and the kit compile clean with them.
STRICT = ["-Wsign-compare", "-Wdouble-promotion", "-Wunused-variable", "-Wunused-function", "-Wswitch", "-Wvla",
          "-Wall", "-Wextra", "-Wmissing-field-initializers", "-Wstrict-aliasing", "-Wno-unused-parameter",
          "-Wshadow", "-Werror"]


def run_main(folder, name, tmp_path, hook=False, per_second=0, step=0, change=0):
    """main.cc built with -DPEA_MODEL=name against the kit in `folder` and the stand-in TFLite
    Micro; (exit code, printed lines)."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++/c++) on this machine")
    stand_ins = tflm_stand_ins(tmp_path / "stand_in")
    (tmp_path / "library.cc").write_text(_STAND_IN_LIBRARY)
    defines = [f"-DTICKS_PER_SECOND={per_second}u", f"-DTICK_STEP={step}u", f"-DCHANGE={change}",
               *(["-DDEBUG_LOG_HOOK"] if hook else [])]
    objects = []
    for source in (MAIN_CC, tmp_path / "library.cc", folder / f"{name}_model_data.cc", folder / f"{name}_test_data.cc"):
        objects.append(str(tmp_path / (pathlib.Path(source).stem + ".o")))
        subprocess.run([compiler, "-std=c++11", *STRICT, f"-DPEA_MODEL={name}", *defines, "-I", str(stand_ins),
                        "-I", str(folder), "-c", str(source), "-o", objects[-1]], check=True)
    subprocess.run([compiler, *objects, "-o", str(tmp_path / "selftest")], check=True)
    result = subprocess.run([str(tmp_path / "selftest")], capture_output=True, text=True, timeout=HANG_S)
    return result.returncode, result.stdout.splitlines()


@pytest.mark.parametrize("hook, per_second, step, change, code, timing, verdict", [
    (True, 0, 500, 0, 0, "time per inference: 500 ticks, mean of 13 runs (tick rate unknown on this "
     "target; on cortex_m_generic a tick is a CPU cycle)", "PASS: 3 of 3 golden samples bit-exact"),
    (False, 1000000, 500, 0, 0, "time per inference: 500 us (500 ticks at 1000000 per second, mean of 13 "
     "runs)", "PASS: 3 of 3 golden samples bit-exact"),
    (False, 0, 0, 1, 1, "time per inference: no timer on this target (13 runs)",
     "FAIL: 3 of 3 golden samples differ"),
], ids=["callback-log-raw-ticks", "plain-log-microseconds", "no-timer-one-step-off"])
def test_main_logs_times_and_judges_on_every_kind_of_target(kit, tmp_path, hook, per_second, step, change,
                                                           code, timing, verdict):
    """main.cc linked with a stand-in TFLite Micro: where the library logs only through a
    registered callback (cortex_m_generic) main.cc registers one, else the weak reference stays
    null; a tick rate of 0 with a counting clock prints raw ticks; one output step off is a FAIL."""
    folder = kit[0]
    result = run_main(folder, "tiny8", tmp_path, hook, per_second, step, change)
    sample = "sample {}: 1 of 10 outputs differ, by up to 1" if change else "sample {}: 10 outputs bit-exact"
    settings = read(folder, "tiny8_model_settings.h")
    arena = "model {} bytes, arena 4321 of {} bytes used".format(constant(settings, "kModelBytes"),
                                                                constant(settings, "kTensorArenaSize"))
    assert result == (code, [*(sample.format(i) for i in range(3)), arena, timing, verdict])


def test_kit_refusals_are_one_clear_error(kit, tmp_path):
    _, path, _, _, x, _ = kit
    with pytest.raises(TFLiteError, match=r"golden inputs shaped \(2, 4, 4\) do not match .*\(N, 8, 8, 1\)"):
        micro_kit.write_micro_kit(path, tmp_path, "bad", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(TFLiteError, match="not a TFLite flatbuffer"):
        micro_kit.write_micro_kit(b"nope" * 4, tmp_path, "bad", x[:1])
    assert os.listdir(tmp_path) == []


def _with_op_code(data, op_type, custom=None):
    """The file with its first operator code replaced: a builtin by name, or a custom op."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    code = model.operatorCodes[0]
    value = getattr(schema.BuiltinOperator, op_type)
    code.builtinCode, code.deprecatedBuiltinCode = value, min(value, 127)
    code.customCode = custom
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_resolver_names_come_from_tflm_own_api():
    """The list is TFLite Micro's (tflm_api, read from the commit the docs build against): the
    names a rule would get wrong are there as TFLM spells them, those TFLM lacks are absent."""
    from pea_keras.tflite import tflm_api
    from pea_keras.tflite.check import LINEAR_OPS, RELU_OPS

    assert {op: tflm_api.BUILTIN_METHODS[op] for op in METHODS} == METHODS
    assert {op: tflm_api.BUILTIN_METHODS[op] for op in ("PADV2", "CUMSUM", "BATCH_MATMUL", "L2_POOL_2D",
                                                        "UNIDIRECTIONAL_SEQUENCE_LSTM")} == {
        "PADV2": "AddPadV2", "CUMSUM": "AddCumSum", "BATCH_MATMUL": "AddBatchMatMul",
        "L2_POOL_2D": "AddL2Pool2D", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}
    assert not {"GELU", "RELU_N1_TO_1", "RELU_0_TO_1", "CONV_3D"} & set(tflm_api.BUILTIN_METHODS)
    assert tflm_api.CUSTOM_METHODS["ethos-u"] == "AddEthosU"
    assert set(tflm_api.INT8_REGISTRATIONS) <= set(tflm_api.BUILTIN_METHODS)
    # What a ReLU-only int8 file is made of, TFLM registers (except the ops named here).
    assert sorted((LINEAR_OPS | RELU_OPS) - set(tflm_api.BUILTIN_METHODS)) == [
        "CONV_3D", "CONV_3D_TRANSPOSE", "ONES_LIKE", "RELU_0_TO_1", "RELU_N1_TO_1", "TILE"]


@pytest.mark.skipif(not os.environ.get("PEA_TFLM_ROOT"), reason="set PEA_TFLM_ROOT to a TFLite Micro "
                    "checkout at tflm_api.TFLM_COMMIT to compare the list with its header")
def test_resolver_list_matches_the_tflm_header():
    from pea_keras.tflite import tflm_api

    header = pathlib.Path(os.environ["PEA_TFLM_ROOT"], "tensorflow/lite/micro/micro_mutable_op_resolver.h")
    methods = re.findall(r"TfLiteStatus (Add\w+)\(", header.read_text())
    listed = {*tflm_api.BUILTIN_METHODS.values(), *tflm_api.CUSTOM_METHODS.values()}
    assert sorted(set(methods) - {"AddBuiltin", "AddCustom"}) == sorted(listed)
    builtins = dict((op, m) for m, op in re.findall(
        r"TfLiteStatus (Add\w+)\([^{]*\{\s*return AddBuiltin\(\s*BuiltinOperator_(\w+)", header.read_text()))
    assert builtins == tflm_api.BUILTIN_METHODS


def test_an_op_tflm_cannot_register_is_refused_in_one_line(kit, tmp_path):
    _, path, _, _, _, _ = kit
    first = inspect(path).operators[0].type  # CONV_2D: operator code 0
    gelu = tmp_path / "gelu.tflite"
    gelu.write_bytes(_with_op_code(path.read_bytes(), "GELU"))
    assert inspect(gelu).operators[0].type == "GELU" and first == "CONV_2D"
    result = pea_tflite("inspect", gelu, "--resolver")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("pea-tflite: error: GELU: TensorFlow Lite Micro has no registration for it "
                             "(MicroMutableOpResolver at commit 90b983c); replace the operator in the "
                             "model, or write and register its kernel yourself\n")
    with pytest.raises(TFLiteError, match="custom operator 'my-op': TensorFlow Lite Micro has no"):
        op_resolver.registrations(inspect(_with_op_code(path.read_bytes(), "CUSTOM", b"my-op")))


def test_the_ethos_u_custom_op_registers_with_add_ethos_u(kit):
    _, path, _, _, _, _ = kit
    info = inspect(_with_op_code(path.read_bytes(), "CUSTOM", b"ethos-u"))
    assert info.operators[0].type == "CUSTOM:ethos-u"
    header = op_resolver.op_resolver_header(info, "vela")
    calls = re.findall(r"resolver\.(Add\w+\([^)]*\)?\))", header)
    assert calls[0] == "AddEthosU()" and len(calls) == len(METHODS)
    assert "// CUSTOM:ethos-u x1, " in header


TWO_BY_TWO = """
    import sys
    import numpy as np
    import keras, tf_keras

    k = {"keras": keras, "tf_keras": tf_keras}[sys.argv[2]]
    k.utils.set_random_seed(0)
    L = k.layers
    image, extra = k.Input((8, 8, 1), name="image"), k.Input((3,), name="extra")
    h = L.Flatten()(L.Conv2D(4, 3, activation="relu")(image))
    z = L.Dense(8, activation="relu")(L.Concatenate()([h, L.Dense(4, activation="relu")(extra)]))
    k.Model([image, extra], [L.Dense(3, activation="softmax", name="probs")(z), L.Dense(1, name="score")(z)]).save(
        sys.argv[1] + "/two_by_two.keras")
    rng = np.random.default_rng(0)
    np.savez(sys.argv[1] + "/calib.npz", image=rng.random((128, 8, 8, 1), dtype=np.float32),
             extra=rng.normal(size=(128, 3)).astype(np.float32))
"""


@pytest.fixture(scope="module", params=["keras", "tf_keras"])
def two_by_two(request, tmp_path_factory):
    """A model with two inputs (an image and a vector) and two outputs (scores and a number) in
    each flavor, converted by `pea-tflite convert` to a file whose stem is no C identifier
    (`1st-two.io`): the folder, the printed lines, the calibration data."""
    folder = tmp_path_factory.mktemp(f"two_by_two_{request.param}")
    fresh_python(TWO_BY_TWO, folder, request.param)
    code, stdout, stderr = pea_tflite("convert", folder / "two_by_two.keras", "-o", folder / "1st-two.io.tflite",
                                      "--calib", f"npz:{folder / 'calib.npz'}")
    assert (code, stderr) == (0, ""), stderr
    with np.load(folder / "calib.npz") as calib:
        return folder, stdout.splitlines(), dict(calib)


@pytest.mark.slow
def test_the_printed_kit_names_are_the_files_and_the_headers_names(two_by_two):
    """A stem with '-', '.' and a leading digit: convert prints the files it wrote and the
    -DPEA_MODEL value, and those are the names on disk, in the #includes and in the C symbols."""
    folder, lines, _ = two_by_two
    assert lines[-1] == ("TFLite Micro kit m1st_two_io (the stem 1st-two.io as a C identifier): build main.cc "
                         "with -DPEA_MODEL=m1st_two_io")
    name = lines[-1].rsplit("=", 1)[1]
    written = [line[len("wrote "):] for line in lines if line.startswith("wrote ") and ": " not in line]
    assert written == [str(folder / (name + s)) for s in micro_kit.KIT_SUFFIXES]
    assert sorted(os.listdir(folder)) == sorted(["1st-two.io.tflite", "two_by_two.keras", "calib.npz",
                                                 *(os.path.basename(p) for p in written)])
    texts = {os.path.basename(p): pathlib.Path(p).read_text() for p in written}
    for file, text in texts.items():
        local = [i for i in re.findall(r'#include "([^"]+)"', text) if not i.startswith("tensorflow/")]
        assert set(local) <= set(texts), file
        if not file.endswith("_model_data.cc") and not file.endswith("_model_data.h"):
            assert f"namespace {name}_model {{" in text, file
    assert f"extern const unsigned char g_{name}_model_data[];" in texts[f"{name}_model_data.h"]


def golden(folder, name):
    """{array name: values} of the kit's test data, and each tensor's settings (signature name,
    shape, scale, zero point) by its C prefix."""
    cc, settings = read(folder, f"{name}_test_data.cc"), read(folder, f"{name}_model_settings.h")
    arrays = {a: np.array(c_numbers(cc, a)) for a in re.findall(r"const \w+ (kTest\w+)\[", cc)}
    tensors = {p: (n, constant(settings, f"k{p}Shape"), constant(settings, f"k{p}Scale"),
                   constant(settings, f"k{p}ZeroPoint"))
               for p, n in re.findall(r"// (\w+) tensor '[^']+' \(signature name '([^']+)'\)", settings)}
    return arrays, tensors


@pytest.mark.slow
def test_two_inputs_and_two_outputs_get_a_kit_whose_golden_data_tflm_reproduces(two_by_two, tmp_path):
    """One golden array per tensor: the inputs are the first calibration samples of the input of
    that name, quantized; the outputs are what TFLite Micro's Python interpreter computes for them;
    main.cc feeds both inputs and checks both outputs (against a stand-in TFLite Micro)."""
    from tflite_micro.python.tflite_micro import runtime

    folder, _, calib = two_by_two
    arrays, tensors = golden(folder, "m1st_two_io")
    assert sorted(arrays) == ["kTestInputs0", "kTestInputs1", "kTestOutputs0", "kTestOutputs1"]
    assert sorted(tensors) == ["Input0", "Input1", "Output0", "Output1"]
    settings = read(folder, "m1st_two_io_model_settings.h")
    assert "constexpr int kNumInputs = 2;" in settings and "constexpr int kNumOutputs = 2;" in settings
    assert "kNumClasses" not in settings
    inputs = []
    for i in range(2):
        tensor, shape, scale, zp = tensors[f"Input{i}"]
        source = calib[tensor]  # The calibration array of that name.
        expected = np.clip(np.round(source[:3] / np.float32(scale) + zp), -128, 127).astype(np.int8)
        inputs.append(arrays[f"kTestInputs{i}"].astype(np.int8).reshape(3, *shape[1:]))
        assert np.array_equal(inputs[-1], expected), tensor
    interpreter = runtime.Interpreter.from_bytes((folder / "1st-two.io.tflite").read_bytes())
    for s in range(3):
        for i, x in enumerate(inputs):
            interpreter.set_input(x[s:s + 1], i)
        interpreter.invoke()
        for o in range(2):
            computed = np.array(interpreter.get_output(o)).reshape(-1)
            assert np.array_equal(arrays[f"kTestOutputs{o}"].reshape(3, -1)[s], computed), (s, o)
    assert [tensors[f"Output{o}"][1] for o in range(2)] in ([[1, 3], [1, 1]], [[1, 1], [1, 3]])
    code, lines = run_main(folder, "m1st_two_io", tmp_path)
    assert code == 0 and lines[:3] == [f"sample {s}: 4 outputs bit-exact" for s in range(3)], lines
    assert lines[-1] == "PASS: 3 of 3 golden samples bit-exact"
    code, lines = run_main(folder, "m1st_two_io", tmp_path / "changed", change=1)
    assert code == 1 and lines[0] == "sample 0: 1 of 4 outputs differ, by up to 1" and lines[-1].startswith("FAIL")
