"""The grammar of ``pea-tflite``: its commands and options, with the targets and their options
from the registry (``targets``), parsed before TensorFlow is imported so that ``--help`` and
mistakes answer at once (``cli`` runs the commands)."""

import argparse
import re
import sys

from pea_keras.tflite import targets

PROG = "pea-tflite"
# The data library's keywords and the convert flags that set them: its errors name the keyword.
DATA_FLAGS = {"scale": "--calib_scale", "any_range": "--calib_any_range"}
_GATES_HELP = ("accept ReLU6 channel gates (squeeze-excite: a feature map times relu6(x + 3) / 6 of its "
               "pooled channels, as in MobileNetV3), each named in the verdict; a product of activations, "
               "so refused by default")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # --force must never mean --force_strip.

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        # An unknown option first: else argparse names a required argument it displaced
        # (`convert --bogus x`: "-o/--output is required"). A command's parser checks its own.
        for token in sys.argv[1:] if args is None else args:
            value = not token.startswith("-") or token == "-" or re.fullmatch(r"-\d+|-\d*\.\d+", token)
            if token == "--" or (value and self._subparsers is not None):
                break
            name = token.split("=", 1)[0] if token.startswith("--") else token[:2]  # -oFILE
            if not value and name not in self._option_string_actions:
                self.error(f"unrecognized option {name}")
        return super().parse_known_args(args, namespace)


def _at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def data_flag(keyword, value):
    """The flag that passes `keyword=value` to the data library: "--calib_scale 255", "--calib_any_range"."""
    return DATA_FLAGS[keyword] if value is True else f"{DATA_FLAGS[keyword]} {value}"


def build_parser():
    p = _Parser(prog=PROG, description=(
        "Deploy Progressive Ensemble Activation models as full-integer TFLite files that are "
        "proven ReLU-only, and run them on LiteRT (phones) and TensorFlow Lite Micro "
        "(microcontrollers)."),
        epilog="Data SOURCE: digits[:SPLIT] (built in) | folder:PATH (one sub-folder per class for "
               "labels) | tfds:NAME[:SPLIT] (already prepared) | npy:PATH | npz:PATH (x and y, or "
               "one array per model input name). A bare folder, .npy/.npz path or TFDS name works too.")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's, the converter's and dependencies' log lines and warnings")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("convert", help="Keras model -> checked int8 .tflite (+ TFLite Micro kit)",
                       description="Strip PEA layers to ReLU, quantize to full int8, prove the file "
                                   "ReLU-only, load-test it, then write it atomically.")
    c.add_argument("model", metavar="MODEL", help=".keras, .h5 or SavedModel directory (Keras 3 or tf_keras)")
    c.add_argument("-o", "--output", required=True, metavar="OUT.tflite", help="file to write")
    helps = dict.fromkeys(t.help for t in targets.all_targets())  # Targets of one family share theirs.
    c.add_argument("--target", choices=targets.names(), default="micro", metavar="TARGET",
                   help="; ".join(helps) + ". Explicit flags override the preset.")
    c.add_argument("--calib", default="digits", metavar="SOURCE",
                   help="calibration inputs shaped like the model input (default: digits, which "
                        "fits only greyscale square inputs of 8 to 64 pixels)")
    c.add_argument("--calib_samples", type=_at_least(1), default=300, metavar="N",
                   help="calibration samples to use (default: 300; fewer than 100 warns)")
    c.add_argument("--calib_scale", type=_positive_float, metavar="S",
                   help="divide integer calibration/training data by S (255 for uint8 images); "
                        "without it integer arrays are refused")
    c.add_argument("--calib_any_range", action="store_true",
                   help="accept image calibration data spanning more than 4x [0, 1] (refused otherwise: "
                        "models here take images in [0, 1])")
    c.add_argument("--io", choices=["int8", "uint8", "float"], help="input/output type (default: by target)")
    c.add_argument("--qat_epochs", type=_at_least(0), default=0, metavar="N",
                   help="quantization-aware fine-tuning epochs before conversion (default: 0 = PTQ)")
    c.add_argument("--train_data", default="digits", metavar="SOURCE",
                   help="labelled data for --qat_epochs (default: digits)")
    c.add_argument("--c_array", metavar="DIR",
                   help="write the TFLite Micro kit into DIR: <stem>_model_data.cc/.h, _op_resolver.h, "
                        "_model_settings.h, _test_data.cc/.h (micro preset: next to the file)")
    c.add_argument("--golden_samples", type=_at_least(1), default=3, metavar="N",
                   help="calibration samples stored with their TFLite Micro outputs in the kit (default: 3)")
    for option in targets.options():
        c.add_argument(option.flag, help=option.help, **({"action": "store_true"} if option.switch
                                                          else {"metavar": option.metavar}))
    c.add_argument("--overwrite", action="store_true", help="replace existing output files")
    c.add_argument("--trust_model_code", action="store_true",
                   help="load a model file that runs code it stores (a Lambda layer's Python bytecode, "
                        "a SavedModel layer rebuilt from its graph), which is refused otherwise: the "
                        "code runs with your rights, so only for a file you trust as you would a script")
    c.add_argument("--allow_gates", action="store_true", help=_GATES_HELP)
    c.add_argument("--force_strip", action="store_true",
                   help="deploy a model whose alpha < 1 anyway: its novel branch is dropped, so the "
                        "device runs a network that differs from the trained one")

    i = sub.add_parser("inspect", help="list operators, fused activations and tensor types",
                       description="Every operator with its type, fused activation (from its "
                                   "options) and input/output tensor types; then totals.")
    i.add_argument("file", metavar="FILE.tflite")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--resolver", action="store_true",
                   help="print a C++ header registering exactly the file's ops on a "
                        "tflite::MicroMutableOpResolver")

    k = sub.add_parser("check", help="exit 0 only if the file is ReLU-only",
                       description="Exit 0 only if every activation is ReLU-family (standalone or "
                                   "fused) and nothing else is nonlinear (no product, quotient, "
                                   "comparison, step or lookup of activations, no max but max "
                                   "pooling); otherwise list every offending operator with its reasons "
                                   "and exit 1. A final SOFTMAX or ARG_MAX on an output is allowed "
                                   "(and named) unless --strict.")
    k.add_argument("file", metavar="FILE.tflite")
    k.add_argument("--strict", action="store_true", help="reject a final SOFTMAX or ARG_MAX too")
    k.add_argument("--allow_gates", action="store_true", help=_GATES_HELP)
    k.add_argument("--int8", action="store_true",
                   help="also reject every activation that is not int8: float compute, int16 activations, "
                        "int32 arithmetic (QUANTIZE/DEQUANTIZE allowed at the edges only)")

    r = sub.add_parser("run", help="top-1 accuracy on LiteRT and/or TFLite Micro",
                       description="Top-1 accuracy of a classifier file (one input, one output of "
                                   "class scores [1, C]) on labelled data; with both runtimes TFLite "
                                   "Micro is also checked against LiteRT's reference kernels (within one "
                                   "quantization step, behind a final softmax one step of its input; "
                                   "else exit 1) and compared with LiteRT's optimized "
                                   "kernels (reported); a file LiteRT cannot load or run is scored on "
                                   "TFLite Micro alone, saying why. Each runtime runs in a child process; "
                                   "--runtime micro never loads LiteRT.")
    r.add_argument("file", metavar="FILE.tflite")
    r.add_argument("--data", required=True, metavar="SOURCE", help="labelled data")
    r.add_argument("--split", default="test", help="split for digits/tfds sources (default: test)")
    r.add_argument("--limit", type=_at_least(1), metavar="N", help="evaluate at most N samples")
    r.add_argument("--runtime", choices=["litert", "micro", "both"], default="both")
    r.add_argument("--json", action="store_true", help="machine-readable output")

    b = sub.add_parser("bench", help="median LiteRT latency of one inference",
                       description="Median wall time of one LiteRT inference (batch 1, zeros on "
                                   "every input) and the TFLite Micro tensor-arena size, each "
                                   "measured in a child process. A file LiteRT cannot load or run "
                                   "gets TFLite Micro's figures instead: its arena and the median "
                                   "time of its reference kernels on this host.")
    b.add_argument("file", metavar="FILE.tflite")
    b.add_argument("--runs", type=_at_least(1), default=50, help="timed runs (default: 50)")
    b.add_argument("--threads", type=_at_least(1), default=1, help="LiteRT threads (default: 1)")
    b.add_argument("--no_xnnpack", action="store_true",
                   help="builtin kernels instead of the XNNPACK delegate (LiteRT's default)")

    sub.add_parser("micro-main", help="print main.cc, the TFLite Micro self-test of a kit",
                   description="Print the portable main.cc that runs a kit's golden samples through "
                               "TFLite Micro and reports PASS/FAIL, arena and time: "
                               "pea-tflite micro-main > main.cc (see the kit's build steps).")
    return p
