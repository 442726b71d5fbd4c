"""pea_keras.tflite.devices: what an int8 file needs on a microcontroller and which parts it fits."""
from pea_keras.tflite import devices
from pea_keras.tflite.micro_kit import arena_with_margin

MID = devices.CLASSES[1]  # 1 MB flash / 256 KB RAM


def _fits(device):
    return [c["fits"] for c in device["classes"]]


def test_flash_holds_model_and_runtime_ram_holds_the_kits_arena_and_a_reserve():
    largest_model = MID.flash_bytes - devices.RUNTIME_FLASH_BYTES
    arena = 200_000
    assert arena_with_margin(arena) + devices.RAM_RESERVE_BYTES <= MID.ram_bytes
    device = devices.needs(largest_model, arena)
    assert device["flash_bytes"] == largest_model and device["arena_measured_bytes"] == arena
    assert device["ram_bytes"] == arena_with_margin(arena)  # What the kit's kTensorArenaSize asks.
    assert _fits(device) == [False, True, True]
    assert device["classes"][0]["short_of"] == ["flash", "RAM"]
    assert _fits(devices.needs(largest_model + 1, arena)) == [False, False, True]
    assert devices.needs(largest_model + 1, arena)["classes"][1]["short_of"] == ["flash"]
    # The largest arena whose kit size plus the reserve still fits 256 KB of RAM, and one past it.
    ram_budget = MID.ram_bytes - devices.RAM_RESERVE_BYTES
    fitting = max(a for a in range(200_000, 220_000, 16) if arena_with_margin(a) <= ram_budget)
    assert _fits(devices.needs(1000, fitting))[1] is True
    assert devices.needs(1000, fitting + 16)["classes"][1]["short_of"] == ["RAM"]


def test_an_unknown_arena_is_said_not_guessed():
    device = devices.needs(3_000_000, None)
    assert device["ram_bytes"] is None and _fits(device) == [False, False, False]
    small = devices.needs(20_000, None)
    assert _fits(small) == [None, None, None]
    assert devices.describe(small).splitlines() == [
        "on a microcontroller: flash 20 KB (model) + ~128 KB (runtime), RAM unknown (TFLite Micro "
        "did not load the file)",
        "  256 KB flash / 64 KB RAM (small Cortex-M0+/M4): flash fits, RAM unknown",
        "  1 MB flash / 256 KB RAM (mid-range Cortex-M4/M33): flash fits, RAM unknown",
        "  2 MB flash / 512 KB RAM (large Cortex-M7/M55): flash fits, RAM unknown"]
