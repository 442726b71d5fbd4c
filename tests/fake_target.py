"""A deploy target from outside the package, as a plugin adds one: ``PEA_TFLITE_TARGETS=fake_target``.
It "compiles" the proven int8 file by appending a trailer, into ``OUT_fake.tflite``."""
import dataclasses
import os

from pea_keras.tflite import targets

TRAILER = b"\0fake-npu"


@dataclasses.dataclass
class Compiled:
    data: bytes

    def summary_lines(self, path):
        return [f"wrote {path}: {len(self.data)} bytes for the fake NPU"]


@dataclasses.dataclass(frozen=True)
class Fake(targets.Target):
    level: int = 1

    def configure(self, fake_level=None):
        return dataclasses.replace(self, level=int(fake_level or 1))

    def compiled_path(self, output_path):
        return os.path.splitext(os.fspath(output_path))[0] + "_fake.tflite"

    def compile(self, data):
        return Compiled(data + TRAILER * self.level)


targets.register(Fake("fake", "fake: int8 I/O, LiteRT load test, OUT_fake.tflite", runtimes=("litert",),
                      kit_next_to_file=False, family="a fake",
                      options=(targets.Option("--fake_level", "fake target: trailers appended", metavar="N"),)))
