"""Model files that run code while loading, and some that do not: `python payload_models.py DIR` writes

    keras3.keras   Keras 3 archive, a Python lambda in a Lambda layer
    tf_keras.keras tf_keras archive, a Python lambda in a Lambda layer
    tf_keras.h5    tf_keras HDF5, the same
    tf_keras_sm/   tf_keras SavedModel directory, the same
    tf_keras_sm_pre25/ the same laid out as before TF 2.5 (the metadata inside saved_model.pb)
    keras3.h5      Keras 3 legacy HDF5, a Python lambda in a Lambda layer
    sneaky_sm/     tf_keras SavedModel with an unregistered custom layer `Sneaky` whose call writes
                   the file `sneaky_marker` (in the working directory) with a TensorFlow op: tf_keras
                   revives the layer from the graph in the file, no Python code needed
    writer_sm/     tf_keras SavedModel whose layer `Writer`, registered as pea_test>Writer, writes the
                   file `sneaky_marker` with a TensorFlow op
    disguised_sm/  tf_keras SavedModel whose unregistered layer (its graph: 7 * x) the metadata names a
                   Dense layer with a config Dense refuses: tf_keras falls back to the graph
    registered.keras  Keras 3 archive whose Lambda calls a registered function (no bytecode)
    registered.h5     tf_keras HDF5 with a registered custom Layer (no bytecode)
    imports.keras     tf_keras archive whose model names module `this` (which prints on import)
    pea.keras, pea_tf_keras.keras, pea.h5, pea_keras3.h5, pea_sm/  PEA models in every format (no code)

The payload appends to the file named by $PEA_MARKER whenever the lambda is called, which every
flavor does while rebuilding the model from its file. The models are tiny CNNs on 8x8x1 inputs, so
the default digits calibration fits them.
"""
import json
import os
import shutil
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# The code an attacker would ship; here it only leaves a marker file. Self-contained (no globals),
# as bytecode rebuilt in another process sees none of this module.
PAYLOAD = lambda x: [open(__import__("os").environ.get("PEA_MARKER", "/dev/null"), "a").close(), x][1]  # noqa: E731


def cnn(k, first):
    L = k.layers
    x = k.Input((8, 8, 1), name="image")
    y = L.Dense(3)(L.Flatten()(L.Conv2D(4, 3, activation="relu")(first(x))))
    return k.Model(x, y, name="cnn")


def pre_tf25(source, target):
    """Copy a SavedModel, moving keras_metadata.pb into saved_model.pb's objects, where TF < 2.5
    kept it (tf_keras still reads it from there)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    shutil.copytree(source, target)
    metadata, saved = saved_metadata_pb2.SavedMetadata(), saved_model_pb2.SavedModel()
    with open(os.path.join(target, "keras_metadata.pb"), "rb") as f:
        metadata.ParseFromString(f.read())
    with open(os.path.join(target, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    for node in metadata.nodes:
        saved.meta_graphs[0].object_graph_def.nodes[node.node_id].user_object.metadata = node.metadata
    with open(os.path.join(target, "saved_model.pb"), "wb") as f:
        f.write(saved.SerializeToString())
    os.remove(os.path.join(target, "keras_metadata.pb"))


SNEAKY_MARKER = "sneaky_marker"


def sneaky(folder):
    import tensorflow as tf
    import tf_keras
    from tf_keras.protobuf import saved_metadata_pb2

    class Sneaky(tf_keras.layers.Layer):  # Not registered: revived from the file's graph.
        def call(self, x):
            tf.io.write_file(SNEAKY_MARKER, "written by the graph in the model file")
            return x

    @tf_keras.saving.register_keras_serializable("pea_test")
    class Writer(Sneaky):
        pass

    class Sevenfold(tf_keras.layers.Layer):
        def call(self, x):
            return 7 * x

    cnn(tf_keras, Sneaky(name="sneaky")).save(os.path.join(folder, "sneaky_sm"), save_format="tf")
    cnn(tf_keras, Writer(name="writer")).save(os.path.join(folder, "writer_sm"), save_format="tf")
    disguised = os.path.join(folder, "disguised_sm")
    cnn(tf_keras, Sevenfold(name="sevenfold")).save(disguised, save_format="tf")
    metadata = saved_metadata_pb2.SavedMetadata()
    with open(os.path.join(disguised, "keras_metadata.pb"), "rb") as f:
        metadata.ParseFromString(f.read())
    for node in metadata.nodes:
        config = json.loads(node.metadata)
        if config.get("class_name") == "Sevenfold":  # A ValueError in Dense(): tf_keras falls back to the graph.
            config["class_name"], config["config"]["units"] = "Dense", "many"
            node.metadata = json.dumps(config)
    with open(os.path.join(disguised, "keras_metadata.pb"), "wb") as f:
        f.write(metadata.SerializeToString())


def main(folder):
    import warnings

    import keras
    import tf_keras

    warnings.filterwarnings("ignore")  # Keras 3 warns that the lambda makes the file unsafe.
    for name in ("keras3.keras", "keras3.h5"):
        cnn(keras, keras.layers.Lambda(PAYLOAD, name="payload")).save(os.path.join(folder, name))
    model = cnn(tf_keras, tf_keras.layers.Lambda(PAYLOAD, name="payload"))
    model.save(os.path.join(folder, "tf_keras.keras"))
    model.save(os.path.join(folder, "tf_keras.h5"))
    model.save(os.path.join(folder, "tf_keras_sm"), save_format="tf")
    pre_tf25(os.path.join(folder, "tf_keras_sm"), os.path.join(folder, "tf_keras_sm_pre25"))
    sneaky(folder)

    @keras.saving.register_keras_serializable("pea_test")
    def double(x):
        return 2 * x

    cnn(keras, keras.layers.Lambda(double, name="double")).save(os.path.join(folder, "registered.keras"))

    @tf_keras.saving.register_keras_serializable("pea_test")
    class Double(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    cnn(tf_keras, Double(name="double")).save(os.path.join(folder, "registered.h5"))

    plain = os.path.join(folder, "plain.keras")
    cnn(tf_keras, lambda x: x).save(plain)
    with zipfile.ZipFile(plain) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    config.update(module="this", class_name="Zen")  # tf_keras imports it to look for the class.
    members["config.json"] = json.dumps(config)
    with zipfile.ZipFile(os.path.join(folder, "imports.keras"), "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    os.remove(plain)

    import pea_keras

    pea_keras3 = pea_keras.wrap(cnn(keras, lambda x: x), activation="silu")
    for name in ("pea.keras", "pea_keras3.h5"):
        pea_keras3.save(os.path.join(folder, name))
    pea = pea_keras.wrap(cnn(tf_keras, lambda x: x), activation="silu")
    for name in ("pea_tf_keras.keras", "pea.h5"):
        pea.save(os.path.join(folder, name))
    pea.save(os.path.join(folder, "pea_sm"), save_format="tf")


if __name__ == "__main__":
    main(sys.argv[1])
