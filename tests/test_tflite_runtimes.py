"""Every .tflite file gets an answer from `run` and `bench`: both runtimes run in a child process,
so a crash is one line naming the runtime and the signal; `--runtime micro` never loads LiteRT;
a TFLite Micro failure names the operator; `run` refuses what top-1 cannot score. The files are
built here by the plain TFLite converter (and edited, to make one LiteRT refuses)."""
import os
import re
import signal

import flatbuffers
import numpy as np
import pytest
import tensorflow as tf
from fresh import pea_tflite

from pea_keras.tflite import TFLiteError, inspect, runtimes

RNG = np.random.default_rng(0)
W = RNG.standard_normal((16, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


def convert(fn, *shapes):
    rng = np.random.default_rng(1)
    specs = [tf.TensorSpec((1, *s), tf.float32) for s in shapes]
    f = tf.function(fn, input_signature=specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.standard_normal((1, *s)).astype(np.float32) for s in shapes] for _ in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def repacked(data, edit):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def bias_on_dimension_3(model):
    """The bias's quantized_dimension set to 3 (TFLite Micro's person_detect.tflite has these):
    LiteRT refuses the file, TFLite Micro runs it."""
    sg = model.subgraphs[0]
    fc = next(op for op in sg.operators if len(op.inputs) == 3)
    sg.tensors[fc.inputs[2]].quantization.quantizedDimension = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtimes")
    classifier = convert(lambda x: tf.matmul(tf.nn.relu(x), W) + B, (16,))
    made = {
        "classifier": classifier,
        "regression": convert(lambda x: tf.reduce_sum(tf.nn.relu(x), -1, keepdims=True), (16,)),
        "two_inputs": convert(lambda a, b: tf.matmul(tf.nn.relu(a + b), W), (16,), (16,)),
        "segmentation": convert(lambda x: tf.nn.relu(x) * 2.0, (4, 4, 3)),
        "litert_refuses": repacked(classifier, bias_on_dimension_3),
        "gelu": convert(lambda x: tf.nn.gelu(tf.matmul(x, W)), (16,)),
        "mish": convert(lambda x: (lambda h: h * tf.tanh(tf.math.softplus(h)))(tf.matmul(x, W)), (16,)),
    }
    paths = {}
    for name, data in made.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    x = RNG.standard_normal((6, 16)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, y=np.arange(6) % 3)
    paths["data"] = f"npz:{folder / 'data.npz'}"
    np.savez(folder / "bad_labels.npz", x=x, y=np.arange(6))
    paths["bad_labels"] = f"npz:{folder / 'bad_labels.npz'}"
    return paths


def one_error(result):
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pea-tflite: error: "), result.stderr
    return result.stderr[len("pea-tflite: error: "):-1]


def test_run_scores_a_classifier_on_both_runtimes(files):
    result = pea_tflite("run", files["classifier"], "--data", files["data"], "--json")
    assert result.returncode == 0, result.stderr
    import json

    scores = json.loads(result.stdout)
    assert scores["samples"] == 6 and scores["agreement"] == 1.0 and scores["max_diff_ok"]
    x, y = np.load(files["data"][4:]).values()
    expected = np.mean(np.argmax(x.clip(0) @ W + B, -1) == y)
    assert scores["litert_accuracy"] == scores["micro_accuracy"] == pytest.approx(expected, abs=1 / 6)


@pytest.mark.parametrize("head, gain", [(tf.nn.softmax, 0.5), (tf.sigmoid, 0.25), (tf.identity, None)])
def test_behind_a_final_softmax_one_step_of_its_input_is_allowed(head, gain):
    """Near a tie a softmax turns one rounding step of its logits into many output steps, so the
    runtimes may differ by one step of its input carried through it: at most half its scale for
    a softmax, a quarter for a logistic; one output step for anything else. The scales are read
    here with LiteRT's own flatbuffer schema."""
    from ai_edge_litert import schema_py_generated as schema

    data = convert(lambda x: head(10.0 * tf.matmul(x, W) + B), (16,))
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    last = graph.operators[-1]
    code = model.operatorCodes[last.opcodeIndex]
    expected = 1.0
    if gain is not None:
        assert max(code.builtinCode, code.deprecatedBuiltinCode) in (
            schema.BuiltinOperator.SOFTMAX, schema.BuiltinOperator.LOGISTIC)
        x, y = (graph.tensors[i].quantization.scale[0] for i in (last.inputs[0], last.outputs[0]))
        expected = 1.0 + gain * x / y
        assert expected > 10  # Logits spread over tens of units: far more than one output step.
    assert runtimes.allowed_difference(data) == pytest.approx(expected)


@pytest.mark.parametrize("name, data, message", [
    ("regression", "data", "output 'Identity' is INT8 [1, 1], not class scores [1, C] "
                           "with C >= 2: top-1 accuracy does not apply to it"),
    ("segmentation", "data", "output 'Identity' is INT8 [1, 4, 4, 3], not class scores "
                             "[1, C] with C >= 2: top-1 accuracy does not apply to it"),
    ("two_inputs", "data", "top-1 needs a model with one input; this one has 2 ('a', 'b')"),
    ("classifier", "bad_labels", "labels run from 0 to 5, but the model scores 3 classes"),
])
def test_run_refuses_what_top1_cannot_score(files, name, data, message):
    assert one_error(pea_tflite("run", files[name], "--data", files[data])) == message


def test_a_file_only_tflite_micro_loads_is_scored_on_it_alone(files):
    """`run` on a file LiteRT refuses (as TFLite Micro's person_detect.tflite): TFLite Micro's
    top-1, the same as --runtime micro's, and one line saying why LiteRT is missing; exit 0."""
    import json

    result = pea_tflite("run", files["litert_refuses"], "--data", files["data"])
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert [line[:16] for line in lines[1:2]] == ["  micro   top-1 "]
    assert lines[2].startswith("  LiteRT cannot load the model: quantized_dimension must be in range [0, 1). Was 3. ")
    assert lines[2].endswith(": scored on TensorFlow Lite Micro alone") and len(lines) == 3
    both = json.loads(pea_tflite("run", files["litert_refuses"], "--data", files["data"], "--json").stdout)
    alone = json.loads(pea_tflite("run", files["litert_refuses"], "--data", files["data"], "--runtime", "micro",
                                  "--json").stdout)
    assert both == {**alone, "litert_error": lines[2][2:-len(": scored on TensorFlow Lite Micro alone")]}


def test_micro_never_needs_litert(files, tmp_path):
    """A file LiteRT refuses runs on TFLite Micro, with LiteRT's interpreter unimportable."""
    blocked = tmp_path / "blocked" / "ai_edge_litert"
    blocked.mkdir(parents=True)
    import ai_edge_litert

    (blocked / "__init__.py").write_text(f"__path__.append({os.path.dirname(ai_edge_litert.__file__)!r})\n")
    (blocked / "interpreter.py").write_text("raise ImportError('LiteRT is not installed here')\n")
    result = pea_tflite("run", files["litert_refuses"], "--data", files["data"], "--runtime", "micro",
                        path=[blocked.parent])
    assert result.returncode == 0, result.stderr
    assert [line[:16] for line in result.stdout.splitlines()[1:]] == ["  micro   top-1 "]
    blocked_litert = pea_tflite("run", files["classifier"], "--data", files["data"], "--runtime", "litert",
                                path=[blocked.parent])
    assert one_error(blocked_litert) == "LiteRT failed (exit 1) while loading the model: ImportError: " \
                                        "LiteRT is not installed here"


def test_tflite_micro_failures_name_the_operator(files):
    message = one_error(pea_tflite("run", files["gelu"], "--data", files["data"], "--runtime", "micro"))
    assert message == "TensorFlow Lite Micro has no kernel for GELU: replace it in the model"
    message = one_error(pea_tflite("run", files["gelu"], "--data", files["data"]))
    assert message == ("TensorFlow Lite Micro has no kernel for GELU: replace it in the model; --runtime "
                       "litert runs the file on LiteRT alone")
    message = one_error(pea_tflite("run", files["mish"], "--data", files["data"], "--runtime", "micro"))
    assert message == ("TensorFlow Lite Micro's EXP kernel (operator 1) failed to prepare: input->type "
                       "!= kTfLiteFloat32 (INT8 != FLOAT32); it does not take this operator's tensor "
                       "types or options: change them in the model")


def test_bench_answers_in_one_line(files):
    result = pea_tflite("bench", files["gelu"], "--runs", "2")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"{files['gelu']}: {files['gelu'].stat().st_size} bytes, LiteRT XNNPACK")
    assert result.stdout.endswith("TFLite Micro arena unknown (TensorFlow Lite Micro has no kernel for GELU: "
                                  "replace it in the model)\n")
    result = pea_tflite("bench", files["litert_refuses"], "--runs", "2")
    assert (result.returncode, result.stderr) == (0, "")
    size, arena = files["litert_refuses"].stat().st_size, runtimes.micro_arena_bytes(files["litert_refuses"])
    assert re.fullmatch(rf"{re.escape(str(files['litert_refuses']))}: {size} bytes, LiteRT cannot load the "
                        r"model: quantized_dimension must be in range \[0, 1\)\. Was 3\. .*; TFLite Micro "
                        rf"reference kernels on this host: median \d+\.\d{{3}} ms over 2 runs, arena {arena} bytes\n",
                        result.stdout)
    result = pea_tflite("bench", files["two_inputs"], "--runs", "2")
    assert result.returncode == 0 and "TFLite Micro arena " in result.stdout and "unknown" not in result.stdout


@pytest.mark.parametrize("runtime, sig, call", [
    ("litert", signal.SIGSEGV, lambda path: runtimes.predict(path, np.zeros((2, 16), np.float32))),
    ("micro", signal.SIGABRT, lambda path: runtimes.micro_arena_bytes(path)),
])
def test_a_runtime_crash_is_one_line_with_the_signal(files, tmp_path, monkeypatch, runtime, sig, call):
    """A worker that dies as LiteRT does on TFLite Micro's keyword_scrambled_8bit.tflite."""
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal, sys\n"
                     "print('pea-worker: loading the model', file=sys.stderr)\n"
                     "print('pea-worker: running sample 1 of 2', file=sys.stderr)\n"
                     "print('double free or corruption (out)', file=sys.stderr, flush=True)\n"
                     f"os.kill(os.getpid(), {int(sig)})\n")
    monkeypatch.setattr(runtimes, "_WORKER", str(crash))
    name = runtimes.RUNTIMES[runtime]
    with pytest.raises(TFLiteError) as e:
        call(files["classifier"])
    assert str(e.value) == (f"{name} crashed ({sig.name}) while running sample 1 of 2 (its last message: "
                            "double free or corruption (out)): it cannot run this file")


def test_tensor_details_come_from_the_file(files):
    inp, out = runtimes.io_details(files["classifier"])
    info = inspect(files["classifier"])
    assert inp["dtype"] == out["dtype"] == np.int8
    assert list(inp["shape"]) == [1, 16] and list(out["shape"]) == [1, 3]
    assert inp["quantization"] == (info.inputs[0].scale[0], info.inputs[0].zero_point[0])


def test_golden_inputs_are_matched_to_the_file_s_inputs_by_name(files, tmp_path):
    """A kit of a two-input file from golden inputs keyed by the inputs' names: each array goes to
    the input of its name (the sum a + b commutes, so the outputs are TFLite Micro's for the pair),
    and a wrong name or count is refused in one line, with nothing written."""
    from pea_keras.tflite import micro_kit

    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((2, 16)).astype(np.float32) for _ in range(2))
    q, outputs, _ = micro_kit.golden_run(files["two_inputs"], {"b": b, "a": a})
    info = inspect(files["two_inputs"])
    assert sorted(t.name for t in info.inputs) == ["a", "b"] and info.signature_names == {}  # No signature.
    for x, t in zip(q, info.inputs):
        given = {"a": a, "b": b}[t.name]
        assert np.array_equal(x, np.clip(np.round(given / t.scale[0] + t.zero_point[0]), -128, 127).astype(np.int8))
    assert np.array_equal(outputs[0], runtimes.micro_run(files["two_inputs"], q)[0][0])
    with pytest.raises(TFLiteError, match=r"^golden inputs a, c do not match the file's inputs .*: key them by"):
        micro_kit.write_micro_kit(files["two_inputs"], tmp_path, "two", {"a": a, "c": b})
    with pytest.raises(TFLiteError, match=r"^golden inputs: 1 array for a file with 2 inputs \(one per input"):
        micro_kit.write_micro_kit(files["two_inputs"], tmp_path, "two", a)
    assert os.listdir(tmp_path) == []
