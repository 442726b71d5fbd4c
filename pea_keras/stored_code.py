"""`code_in`: the code a saved model file would make Keras run while loading, found without running it.

A model file is data, except where a format keeps code that its loader runs:
- a Python lambda dumped as bytecode, `{"class_name": "__lambda__"}` (Keras 3 and tf_keras archives;
  Keras 3's `Lambda` layer among them);
- `<attr>_type: "lambda"` beside `<attr>` (tf_keras' `Lambda` and RNN cell wrappers, in every
  tf_keras format): tf_keras dumps *any* Python function there as bytecode, registered or not;
- an object naming a module outside Keras that no registered name covers (tf_keras archives only:
  their loader imports whatever module a config names and takes any attribute from it; Keras 3
  imports only its own packages, and the legacy formats import nothing);
- a SavedModel layer or model whose class is neither built into tf_keras nor registered: tf_keras
  revives it from the TensorFlow graph stored in the file, which then runs as its `call`;
- as a second line, a SavedModel graph op that touches files or runs Python (`_graph_ops`).
The configs are read the way each loader reads them: a `.keras` archive's config.json, an HDF5
file's `model_config` (and `training_config`), a SavedModel's keras_metadata.pb or, written before
TF 2.5, the metadata inside saved_model.pb. Registered objects (PEALayer, anything registered with
`register_keras_serializable`) are referred to by name and carry no code.
"""
import builtins
import dataclasses
import json
import os
import re
import zipfile

from pea_keras.errors import ModelFileError, first_line

__all__ = ["StoredCode", "code_in", "archive_json"]

_KERAS_PACKAGES = ("keras", "tf_keras")
_RUNS = "which would run when the model is loaded"
_IDENTIFIER = "__pea_identifier__"  # Not a key of Keras' metadata.
# The SavedModel objects that tf_keras revives from the file's graph when their class is unknown
# (RevivedLayer, RevivedNetwork); a graph network (Functional, Sequential) is rebuilt from its config.
_REVIVED = {"_tf_keras_layer", "_tf_keras_input_layer", "_tf_keras_model", "_tf_keras_network",
            "_tf_keras_sequential"}
_NETWORKS = {"_tf_keras_model", "_tf_keras_network", "_tf_keras_sequential"}


@dataclasses.dataclass(frozen=True)
class StoredCode:
    """One place in a file where loading would run code: where, what runs, how to avoid it."""
    where: str    # "layer 'payload' (Lambda)"
    reason: str   # "stores its function as Python bytecode, which would run when ..."
    fix: str      # how to save the same model without it

    def __str__(self):
        return f"{self.where} {self.reason}"


def archive_json(path, name):
    """A JSON member of a `.keras` archive, or None if the archive has no such member."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(name)) if name in z.namelist() else None
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ModelFileError(f"{path}: not a Keras .keras archive ({first_line(e)})") from None


def _h5_configs(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            texts = [f.attrs[key] for key in ("model_config", "training_config") if key in f.attrs]
    except OSError as e:
        raise ModelFileError(f"{path}: not an HDF5 model file ({first_line(e)})") from None
    return [json.loads(t.decode() if isinstance(t, bytes) else t) for t in texts]


def _saved_model_configs(path):
    """The metadata tf_keras revives layers from, keras_metadata.pb's else saved_model.pb's, each
    with its object's identifier ("_tf_keras_layer") under `_IDENTIFIER`."""
    metadata = os.path.join(path, "keras_metadata.pb")
    if os.path.exists(metadata):
        from tf_keras.protobuf import saved_metadata_pb2

        proto = saved_metadata_pb2.SavedMetadata()
        with open(metadata, "rb") as f:
            proto.ParseFromString(f.read())
        nodes = [(node.identifier, node.metadata) for node in proto.nodes]
    else:
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        nodes = [(node.user_object.identifier, node.user_object.metadata) for graph in proto.meta_graphs
                 for node in graph.object_graph_def.nodes if node.WhichOneof("kind") == "user_object"]
    return [{**json.loads(text), _IDENTIFIER: identifier} for identifier, text in nodes if text]


def _configs(path):
    if os.path.isdir(path):
        return _saved_model_configs(path)
    if path.endswith(".keras"):
        config = archive_json(path, "config.json")
        if config is None:
            raise ModelFileError(f"{path}: .keras archive without config.json")
        return [config]
    return _h5_configs(path)


def _layer(node):
    """"'name' (Class)" when `node` is a serialized layer or model, else None."""
    config = node.get("config")
    name = node.get("name") or (config.get("name") if isinstance(config, dict) else None)
    cls = node.get("class_name")
    return f"'{name}' ({cls})" if isinstance(name, str) and isinstance(cls, str) else None


class _Finder:
    def __init__(self, flavor, imports):
        self.flavor, self.imports, self.found = flavor, imports, []

    def walk(self, node, layer="(unnamed)", key="value"):
        if isinstance(node, list):
            for item in node:
                self.walk(item, layer, key)
            return
        if not isinstance(node, dict):
            return
        layer = _layer(node) or layer
        if node.get(_IDENTIFIER) in _REVIVED and not _revived_from_config(node):
            self.add(layer, "is neither built into tf_keras nor registered: tf_keras would rebuild it "
                     "from the TensorFlow graph stored in the file, which would run when the model is called",
                     "register the class with tf_keras.saving.register_keras_serializable and import "
                     "that code before loading")
        if node.get("class_name") == "__lambda__":
            self.add(layer, f"stores its {key} as Python bytecode (a lambda), {_RUNS}",
                     f"use a named function registered with {self.flavor}.saving."
                     "register_keras_serializable instead of the lambda")
            return
        if self.imports:
            self.check_import(node, layer)
        for k, v in node.items():
            if k.endswith("_type") and v == "lambda" and k[: -len("_type")] in node:
                self.add(layer, f"stores its {k[: -len('_type')]} as Python bytecode, {_RUNS}",
                         "tf_keras saves any Python function of a Lambda layer as bytecode: put "
                         "the code in a Layer subclass registered with "
                         "tf_keras.saving.register_keras_serializable")
            self.walk(v, layer, k)

    def check_import(self, node, layer):
        module, cls = node.get("module"), node.get("class_name")
        if not (isinstance(module, str) and isinstance(cls, str)):
            return
        function = cls == "function"
        name = node.get("config") if function else cls
        if not isinstance(name, str):
            return
        package = module.split(".")[0]
        if package in _KERAS_PACKAGES or (module == "builtins" and not hasattr(builtins, name)):
            return
        if _registered(node.get("registered_name") if not function else name):
            return
        self.add(layer, f"names '{name}' of module '{module}', which loading would import and use",
                 "register it with tf_keras.saving.register_keras_serializable and import that "
                 "code before loading")

    def add(self, layer, reason, fix):
        finding = StoredCode(f"layer {layer}", reason, fix)
        if finding not in self.found:  # A SavedModel repeats each layer's config in its model's.
            self.found.append(finding)


def _revived_from_config(node):
    """Whether tf_keras rebuilds this SavedModel object from its config (code of this installation)."""
    from tf_keras.src.layers.serialization import get_builtin_layer

    name = node.get("class_name")
    if not isinstance(name, str):
        return False
    graph_network = node.get(_IDENTIFIER) in _NETWORKS and (
        node.get("is_graph_network") or name in ("Functional", "Sequential"))
    return bool(graph_network or get_builtin_layer(name) is not None or _registered(name))


def _registered(name):
    if not isinstance(name, str):
        return False
    import tf_keras

    from pea_keras import layer  # noqa: F401  (registers PEALayer)

    return tf_keras.saving.get_registered_object(name) is not None


def code_in(path, flavor):
    """Every place where loading the file with `flavor` ("keras" or "tf_keras") would run code
    the file stores or names, in file order; [] for a file that is only data.

    Raises:
        ModelFileError: the configs cannot be read.
    """
    path = os.fspath(path)
    from google.protobuf.message import DecodeError

    try:
        configs = _configs(path)
    except ModelFileError:
        raise
    except (ValueError, OSError, DecodeError) as e:  # Malformed JSON or protobuf.
        raise ModelFileError(f"{path}: cannot read the model config ({first_line(e)})") from None
    finder = _Finder(flavor, imports=flavor == "tf_keras" and not os.path.isdir(path)
                     and path.endswith(".keras"))
    for config in configs:
        finder.walk(config)
    return finder.found + (_graph_ops(path) if os.path.isdir(path) else [])


# Ops that touch files or run Python, refused in a SavedModel's graph outside its checkpoint
# functions: tf_keras runs that graph as the `call` of a layer it revives from it, and TensorFlow
# runs parts of it while loading (the functions of resources and of custom checkpointed objects).
_DENIED_OPS = re.compile(r"PyFunc|File|^(Save|Restore|MergeV2Checkpoints|ImmutableConst|Debug|Write)|ReaderV?2?$"
                         r"|SummaryWriter|(TextLine|TFRecord|FixedLengthRecord|Snapshot|Cache|Save|Load)Dataset"
                         r"|DatasetToTFRecord")


def _graph_ops(path):
    """A SavedModel's denied ops (`_DENIED_OPS`, and PrintV2 to a file), one finding per op type."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    found = {}
    for graph in proto.meta_graphs:
        functions = {f.signature.name: f for f in graph.graph_def.library.function}
        saver = {name.split(":")[0] for name in (graph.saver_def.save_tensor_name, graph.saver_def.restore_op_name)}
        saver_only = _called({n for node in graph.graph_def.node if node.name in saver for n in _calls(node)},
                             functions)
        saver_only -= _called({n for nodes in [[node for node in graph.graph_def.node if node.name not in saver]]
                               + [functions[name].node_def for name in set(functions) - saver_only]
                               for node in nodes for n in _calls(node)}, functions)  # Called by others too.
        bodies = [("the main graph", graph.graph_def.node)] + [
            (f"function '{name}'", f.node_def) for name, f in functions.items() if name not in saver_only]
        for where, nodes in bodies:
            for node in nodes:
                stream = node.attr["output_stream"].s.decode(errors="replace") if node.op == "PrintV2" else ""
                if _DENIED_OPS.search(node.op) or stream.startswith("file"):
                    found.setdefault(node.op, StoredCode(
                        "the TensorFlow graph", f"has a {node.op} op (in {where}), which touches files or runs "
                        "Python, and TensorFlow may run it while loading or calling the model",
                        f"save the model without the {node.op} op"))
    return list(found.values())


def _calls(node):
    """The functions a graph node calls (its function-valued attributes)."""
    for attr in node.attr.values():
        if attr.func.name:
            yield attr.func.name
        yield from (f.name for f in attr.list.func)


def _called(names, functions):
    """`names` and every function they call, transitively."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        todo.extend(n for node in functions[name].node_def for n in _calls(node))
    return seen
