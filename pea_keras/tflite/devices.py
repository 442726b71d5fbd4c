"""What an int8 file needs on a microcontroller, and which common classes of part it fits.

Flash holds the model array and the TensorFlow Lite Micro runtime; RAM holds the tensor arena
(the kit's `kTensorArenaSize`: the measured arena plus its margin) and the application's stack.
The allowances below come from the Cortex-M4 builds of the kit in docs/RESULTS.md (section 3:
86-105 kB of code and constants for TFLM, the kernels, CMSIS-NN and the self-test).
"""

import dataclasses

from pea_keras.tflite.micro_kit import arena_with_margin

RUNTIME_FLASH_BYTES = 128 * 1024   # TFLM framework + int8 kernels (+ CMSIS-NN), rounded up.
RAM_RESERVE_BYTES = 16 * 1024      # Stack and application state beside the arena.


@dataclasses.dataclass(frozen=True)
class PartClass:
    """A common class of microcontroller: its flash and RAM, and parts of that class."""

    label: str
    examples: str
    flash_bytes: int
    ram_bytes: int


CLASSES = (
    PartClass("256 KB flash / 64 KB RAM", "small Cortex-M0+/M4", 256 * 1024, 64 * 1024),
    PartClass("1 MB flash / 256 KB RAM", "mid-range Cortex-M4/M33", 1 << 20, 256 * 1024),
    PartClass("2 MB flash / 512 KB RAM", "large Cortex-M7/M55", 2 << 20, 512 * 1024),
)


def needs(model_bytes, arena_bytes):
    """{flash_bytes (the model), ram_bytes (the kit's arena; None when TFLite Micro did not load
    the file), ..., classes: [{label, examples, flash_bytes, ram_bytes, fits, short_of}]}.
    `fits` is None when the arena is unknown; `short_of` lists "flash" and/or "RAM"."""
    ram = arena_with_margin(arena_bytes) if arena_bytes else None
    classes = []
    for part in CLASSES:
        short = ["flash"] if model_bytes + RUNTIME_FLASH_BYTES > part.flash_bytes else []
        if ram is not None and ram + RAM_RESERVE_BYTES > part.ram_bytes:
            short.append("RAM")
        fits = False if short else (None if ram is None else True)
        classes.append({"label": part.label, "examples": part.examples, "flash_bytes": part.flash_bytes,
                        "ram_bytes": part.ram_bytes, "fits": fits, "short_of": short})
    return {"flash_bytes": int(model_bytes), "ram_bytes": ram, "arena_measured_bytes": arena_bytes,
            "runtime_flash_bytes": RUNTIME_FLASH_BYTES, "ram_reserve_bytes": RAM_RESERVE_BYTES,
            "classes": classes}


def _kb(n):
    return f"{n / 1024:.0f} KB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MB"


def describe(device):
    """Lines for the end of a run: what the file needs, then whether each class of part fits it."""
    ram = (f"RAM {_kb(device['ram_bytes'])} (TFLite Micro arena)" if device["ram_bytes"]
           else "RAM unknown (TFLite Micro did not load the file)")
    first = (f"on a microcontroller: flash {_kb(device['flash_bytes'])} (model) + ~"
             f"{_kb(device['runtime_flash_bytes'])} (runtime), {ram}")
    verdicts = []
    for c in device["classes"]:
        verdict = {True: "fits", None: "flash fits, RAM unknown"}.get(
            c["fits"], f"too small ({' and '.join(c['short_of'])})")
        verdicts.append(f"  {c['label']} ({c['examples']}): {verdict}")
    return "\n".join([first, *verdicts])
