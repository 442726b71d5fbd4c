"""A model file is data: loading one for conversion never runs code stored in it, in any format,
unless the user vouches for the file (`--trust_model_code`, `trust_code=True`), which says so."""
import os
import re
import shutil
import sys

import pytest
from fresh import TESTS, fresh_python, pea_tflite, run
from payload_models import SNEAKY_MARKER

from pea_keras.errors import UntrustedCodeError
from pea_keras.saving import flavor_of_file, load_model, revived_layers
from pea_keras.stored_code import code_in

PAYLOADS = ["keras3.keras", "tf_keras.keras", "tf_keras.h5", "tf_keras_sm", "tf_keras_sm_pre25", "keras3.h5"]
RUNS = "stores its function as Python bytecode{}, which would run when the model is loaded; refused: "
FIX = {
    "keras": "use a named function registered with keras.saving.register_keras_serializable "
             "instead of the lambda",
    "tf_keras": "tf_keras saves any Python function of a Lambda layer as bytecode: put the code in "
                "a Layer subclass registered with tf_keras.saving.register_keras_serializable",
}
OPT_IN = ", or load it with trust_code=True (pea-tflite convert --trust_model_code) only if you trust the file"


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    folder = tmp_path_factory.mktemp("payloads")
    result = run(sys.executable, TESTS / "payload_models.py", folder, TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def convert(model, tmp_path, *flags):
    """`pea-tflite convert MODEL -o out/m.tflite` as a user runs it; the payload's marker in tmp_path."""
    (tmp_path / "out").mkdir()
    return pea_tflite("convert", model, "-o", "out/m.tflite", *flags, cwd=tmp_path, TF_CPP_MIN_LOG_LEVEL=None,
                      PEA_MARKER=str(tmp_path / "marker"))


def refusal(path):
    flavor = flavor_of_file(path)
    return (f"{path}: layer 'payload' (Lambda) " + RUNS.format(" (a lambda)" if flavor == "keras" else "")
            + FIX[flavor] + OPT_IN)


@pytest.mark.parametrize("name", PAYLOADS)
def test_a_model_that_runs_code_is_refused_and_nothing_runs(payloads, tmp_path, name):
    result = convert(payloads / name, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"pea-tflite: error: {refusal(payloads / name)}"]
    assert result.stdout == ""
    assert not (tmp_path / "marker").exists()
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.slow
@pytest.mark.parametrize("name", PAYLOADS[:4])
def test_the_opt_in_runs_the_code_and_says_so(payloads, tmp_path, name):
    result = convert(payloads / name, tmp_path, "--trust_model_code", "--target", "phone")
    lines = result.stderr.splitlines()
    lambda_ = " (a lambda)" if name == "keras3.keras" else ""
    assert lines[0] == (f"pea-tflite: warning: {payloads / name}: loaded with trust_code=True, Keras' "
                        f"safe mode off; it runs code: layer 'payload' (Lambda) stores its function as "
                        f"Python bytecode{lambda_}, which would run when the model is loaded")
    assert (tmp_path / "marker").exists()
    assert result.returncode == 0 and len(lines) == 1, result.stderr
    assert os.listdir(tmp_path / "out") == ["m.tflite"]


@pytest.mark.slow
def test_a_tf_keras_archive_naming_an_outside_module_is_refused_before_the_import(payloads, tmp_path):
    # tf_keras imports the module an archive's object names; `this` prints the Zen of Python.
    result = convert(payloads / "imports.keras", tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"pea-tflite: error: {payloads / 'imports.keras'}: layer 'cnn' (Zen) names 'Zen' of module "
        "'this', which loading would import and use; refused: register it with "
        "tf_keras.saving.register_keras_serializable and import that code before loading" + OPT_IN]
    (tmp_path / "trusted").mkdir()
    trusted = convert(payloads / "imports.keras", tmp_path / "trusted", "--trust_model_code")
    assert "The Zen of Python" in trusted.stdout


def test_load_model_refuses_every_payload_and_loads_it_when_trusted(payloads, tmp_path, monkeypatch):
    monkeypatch.setenv("PEA_MARKER", str(tmp_path / "marker"))
    for name in PAYLOADS:
        with pytest.raises(UntrustedCodeError) as e:
            load_model(payloads / name)
        assert str(e.value) == refusal(payloads / name)
    assert not (tmp_path / "marker").exists()
    with pytest.warns(UserWarning, match=r"tf_keras.h5: loaded with trust_code=True, Keras' safe mode off"):
        model = load_model(payloads / "tf_keras.h5", trust_code=True)
    assert (tmp_path / "marker").exists() and model.get_layer("payload") is not None


@pytest.fixture(scope="module")
def registered():
    """The registered function and layer the payload builder saved, registered here too."""
    import keras
    import tf_keras

    @keras.saving.register_keras_serializable("pea_test")
    def double(x):
        return 2 * x

    @tf_keras.saving.register_keras_serializable("pea_test")
    class Double(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    @tf_keras.saving.register_keras_serializable("pea_test")
    class Writer(tf_keras.layers.Layer):
        def call(self, x):
            return x

    return double, Double


def test_registered_objects_carry_no_code_and_load(payloads, registered):
    double, Double = registered
    for name, layer_type in (("registered.keras", "Lambda"), ("registered.h5", "Double")):
        assert code_in(payloads / name, flavor_of_file(payloads / name)) == []
        model = load_model(payloads / name)
        assert type(model.get_layer("double")).__name__ == layer_type
    assert load_model(payloads / "registered.keras").get_layer("double").function is double


@pytest.mark.parametrize("name", ["pea.keras", "pea_tf_keras.keras", "pea.h5", "pea_keras3.h5", "pea_sm"])
def test_pea_models_carry_no_code_and_load(payloads, name):
    import pea_keras

    assert code_in(payloads / name, flavor_of_file(payloads / name)) == []
    assert len(pea_keras.pea_layers(load_model(payloads / name))) == 1


SNEAKY = ("layer 'sneaky' (Sneaky) is neither built into tf_keras nor registered: tf_keras would rebuild it "
          "from the TensorFlow graph stored in the file, which would run when the model is called (and 1 more); "
          "refused: register the class with tf_keras.saving.register_keras_serializable and import that code "
          "before loading" + OPT_IN)


def test_a_savedmodel_layer_revived_from_its_graph_is_refused_and_nothing_runs(payloads, tmp_path):
    result = convert(payloads / "sneaky_sm", tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [f"pea-tflite: error: {payloads / 'sneaky_sm'}: {SNEAKY}"]
    assert os.listdir(tmp_path / "out") == [] and not (tmp_path / SNEAKY_MARKER).exists()


def test_load_model_refuses_a_revived_layer_and_loads_it_when_trusted(payloads, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)  # The graph writes its marker into the working directory.
    with pytest.raises(UntrustedCodeError) as e:
        load_model(payloads / "sneaky_sm")
    assert str(e.value) == f"{payloads / 'sneaky_sm'}: {SNEAKY}"
    with pytest.warns(UserWarning, match="sneaky_sm: loaded with trust_code=True, Keras' safe mode off; it runs "
                                         "code: layer 'sneaky' \\(Sneaky\\) is neither built into tf_keras"):
        model = load_model(payloads / "sneaky_sm", trust_code=True)
    assert not (tmp_path / SNEAKY_MARKER).exists()
    model(np.zeros((1, 8, 8, 1), "float32"))  # Trusted: the file's graph runs, as the warning said.
    assert (tmp_path / SNEAKY_MARKER).read_text() == "written by the graph in the model file"


def test_a_layer_revived_after_its_config_failed_is_refused_before_it_runs(payloads):
    # Its metadata names a Dense that Dense() refuses: tf_keras falls back to the graph in the file.
    assert code_in(payloads / "disguised_sm", "tf_keras") == []
    with pytest.raises(UntrustedCodeError) as e:
        load_model(payloads / "disguised_sm")
    assert str(e.value) == (
        f"{payloads / 'disguised_sm'}: layer 'sevenfold' (Dense) could not be rebuilt from its config: tf_keras "
        "rebuilt it from the TensorFlow graph stored in the file, which would run when the model is called; "
        "refused: save the model again with a config its class accepts" + OPT_IN)
    with pytest.warns(UserWarning, match="disguised_sm: loaded with trust_code=True"):
        model = load_model(payloads / "disguised_sm", trust_code=True)
    assert [str(found) for found in revived_layers(model)] == [
        "layer 'sevenfold' (Dense) could not be rebuilt from its config: tf_keras rebuilt it from the TensorFlow "
        "graph stored in the file, which would run when the model is called"]


def test_a_file_op_in_the_graph_of_a_registered_layer_is_refused(payloads, registered):
    # The class is known here, so tf_keras would run this installation's code, not the graph; the
    # graph is refused all the same: TensorFlow runs parts of it while loading.
    assert [str(found) for found in code_in(payloads / "writer_sm", "tf_keras")] == [
        "the TensorFlow graph has a WriteFile op (in function '__inference__wrapped_model_"
        + _wrapped_model_id(payloads / "writer_sm") + "'), which touches files or runs Python, and TensorFlow "
        "may run it while loading or calling the model"]
    with pytest.raises(UntrustedCodeError, match="refused: save the model without the WriteFile op, or load it with "
                                                 "trust_code=True"):
        load_model(payloads / "writer_sm")


def test_the_checkpoint_functions_are_exempt_only_while_nothing_else_calls_them(payloads, tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    assert code_in(payloads / "pea_sm", "tf_keras") == []  # Its save function writes files; loading never calls it.
    copy = tmp_path / "pea_sm"
    shutil.copytree(payloads / "pea_sm", copy)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((copy / "saved_model.pb").read_bytes())
    library = proto.meta_graphs[0].graph_def.library.function
    save = next(f.signature.name for f in library if "_traced_save_" in f.signature.name)
    call = next(f for f in library if "layer_call_and_return_conditional_losses" in f.signature.name)
    call.node_def.add(name="save_it", op="StatefulPartitionedCall").attr["f"].func.name = save
    (copy / "saved_model.pb").write_bytes(proto.SerializeToString())
    found = {re.match(r"has a (\w+) op \(in function '(\w+)'", f.reason).groups() for f in code_in(copy, "tf_keras")}
    assert found == {("SaveV2", save), ("MergeV2Checkpoints", save), ("ShardedFilename", save)}


def _wrapped_model_id(saved_model):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    names = [f.signature.name for f in proto.meta_graphs[0].graph_def.library.function]
    return next(n for n in names if n.startswith("__inference__wrapped_model_")).rsplit("_", 1)[1]


@pytest.mark.slow
def test_a_trusted_revived_layer_is_refused_by_the_converter_in_one_line(payloads, tmp_path):
    result = convert(payloads / "sneaky_sm", tmp_path, "--trust_model_code", "--target", "phone")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "pea-tflite: error: layer 'sneaky' (Sneaky) was rebuilt from the TensorFlow graph in the file (its class is "
        "not registered here) and tf_keras cannot export it for the converter: in Python, register its class, "
        "load the model and pass it to pea_keras.tflite.convert"]
    assert os.listdir(tmp_path / "out") == [] and not (tmp_path / SNEAKY_MARKER).exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pea_keras3.h5", "pea_sm"])
def test_a_keras3_h5_and_a_savedmodel_load_and_convert_in_fresh_processes(payloads, tmp_path, name):
    out = fresh_python("""
        import sys, pea_keras
        model = pea_keras.load_model(sys.argv[1])
        print(type(model).__module__.split(".")[0], len(pea_keras.pea_layers(model)))
    """, payloads / name)
    assert out.splitlines()[-1] == ("keras 1" if name.endswith(".h5") else "tf_keras 1")
    result = convert(payloads / name, tmp_path, "--force_strip")  # Saved before training: alpha 0.
    assert result.returncode == 0, result.stderr
    assert "ReLU-only check: passed" in result.stdout
    assert sorted(os.listdir(tmp_path / "out"))[0] == "m.tflite"
