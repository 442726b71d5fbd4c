"""The files one conversion writes, named once: the int8 file, the file its target compiles from
it, and the TFLite Micro kit of the file deployed. Checked before any work, written together or
not at all."""

import dataclasses
import os
import tempfile

from pea_keras.errors import TFLiteError
from pea_keras.files import NotRegularFileError, atomic_write_many, write_error_message, write_target


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Where ``convert`` writes for one ``targets.Target``."""

    file: str  # the proven int8 file
    compiled: str | None  # the target's compiled file, or None
    kit_dir: str | None  # the kit's folder, or None for no kit

    @classmethod
    def of(cls, output_path, target, kit_dir=None):
        output_path = os.fspath(output_path)
        return cls(output_path, target.compiled_path(output_path), None if kit_dir is None else os.fspath(kit_dir))

    @property
    def deployed(self):
        """The file the device runs, and the kit is made of."""
        return self.compiled or self.file

    def kit_paths(self):
        if self.kit_dir is None:
            return ()
        from pea_keras.tflite.micro_kit import kit_paths

        return kit_paths(self.kit_dir, stem(self.deployed))

    def check(self, overwrite=False):
        """Refuse, before any work, outputs that cannot be written: an existing file without
        `overwrite`, a missing or unwritable folder, anything but a regular file in a file's place
        (a directory, device node, FIFO or socket, even with `overwrite`)."""
        for path in [self.file, *([self.compiled] if self.compiled else []), *self.kit_paths()]:
            try:
                write_target(path)  # A device node, FIFO, socket or directory is never replaced.
            except NotRegularFileError as e:
                raise TFLiteError(str(e)) from None
            if os.path.exists(path) and not overwrite:
                raise TFLiteError(f"{path} exists (pass --overwrite to replace it)")
        folders = [os.path.dirname(os.path.abspath(self.file))]
        if self.kit_dir is not None and os.path.isdir(self.kit_dir):  # Created at the end when missing.
            folders.append(os.path.abspath(self.kit_dir))
        for folder in folders:
            if not os.path.isdir(folder):
                raise TFLiteError(f"{folder}: output folder does not exist")
            try:  # The one reliable test: what the final write will do (os.access ignores mounts and ACLs).
                tempfile.TemporaryFile(dir=folder).close()
            except OSError as e:
                message = write_error_message(e, path=folder, safe="nothing was converted")
                raise TFLiteError(message or f"{folder}: cannot write there ({e.strerror or e})") from None
        return self

    def write(self, contents, overwrite=False):
        """Writes {path: bytes} atomically, all or nothing (a full disk changes none of the files;
        the OSError names the file that did not fit)."""
        if self.kit_dir is not None:
            os.makedirs(self.kit_dir, exist_ok=True)
        try:
            atomic_write_many(contents, exclusive=not overwrite)
        except FileExistsError as e:  # Another writer created it while this one converted.
            raise TFLiteError(f"{e.filename} appeared while converting (another process wrote it); nothing "
                              "of this conversion was written: pass --overwrite to replace it") from None
