"""pea_keras.training.reporting: traces, plots and tables from plain values."""
import re

from pea_keras.tflite import devices
from pea_keras.training import reporting


def test_alpha_trace_round_trip_and_cut(tmp_path):
    reporting.save_alpha_trace(tmp_path, [0, 1, 2, 3], [0.0, 0.1, 0.5, 1.0])
    assert reporting.load_alpha_trace(tmp_path) == ([0, 1, 2, 3], [0.0, 0.1, 0.5, 1.0])
    assert reporting.load_alpha_trace(tmp_path, before_step=2) == ([0, 1], [0.0, 0.1])
    assert reporting.load_alpha_trace(tmp_path / "absent") == ([], [])
    assert reporting.trace_stride(100) == 1 and reporting.trace_stride(500_000) == 100


def test_plots_are_png(tmp_path):
    reporting.plot_alpha(tmp_path / "a.png", [0, 1, 2], [0.0, 0.5, 1.0], 1, "t")
    reporting.plot_alpha(tmp_path / "b.png", [], [], 1, "relu")
    reporting.plot_curves(tmp_path / "c.png", {"epoch": [0, 1], "accuracy": [0.5, 0.6],
                                               "val_accuracy": [0.4, 0.5], "loss": [1, 0.5]})
    for name in ("a.png", "b.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables():
    metrics = {"metric": "top1", "mode": "pea", "arch": "tiny", "params": 1234, "dataset": "digits",
               "alpha_final": 1.0, "wall_time_s": {"total": 3.0}, "run_dir": "/r",
               "top1": {"pea": 0.9, "stripped": 0.9, "int8": 0.85},
               "sizes": {"pea_model_bytes": 2048, "relu_model_bytes": 1024, "tflite_int8_bytes": 300},
               "tflite": {"path": "/t.tflite", "device": devices.needs(640_000, 40_000)}}
    table = reporting.summary_table(metrics)
    assert re.search(r"int8 TFLite \(LiteRT\)\s+85.00 %", table) and "int8 file: /t.tflite (ReLU-only)" in table
    assert table.splitlines()[-5:-1] == [
        "on a microcontroller: flash 625 KB (model) + ~128 KB (runtime), RAM 44 KB (TFLite Micro arena)",
        "  256 KB flash / 64 KB RAM (small Cortex-M0+/M4): too small (flash)",
        "  1 MB flash / 256 KB RAM (mid-range Cortex-M4/M33): fits",
        "  2 MB flash / 512 KB RAM (large Cortex-M7/M55): fits"]
    kit = {**metrics, "tflite": {**metrics["tflite"], "path": "/tflite/1st-run_int8.tflite",
                                 "micro_kit": ["/tflite/m1st_run_int8_model_data.cc"]}}
    assert ("TFLite Micro kit m1st_run_int8 (the stem 1st-run_int8 as a C identifier): build main.cc with "
            "-DPEA_MODEL=m1st_run_int8") in reporting.summary_table(kit).splitlines()
    comparison = {"metric": "top1", "seed": 0, "relu": {"pea": 0.5, "stripped": 0.5},
                  "pea": {"pea": 0.6, "stripped": 0.6}, "difference": {"pea": 0.1, "stripped": 0.1}}
    assert "+10.00 pt" in reporting.compare_table(comparison)


def test_truncate_history(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,accuracy\n0,0.5\n1,0.6\n2,0.7\n")
    reporting.truncate_history(tmp_path, 2)
    assert reporting.read_history(tmp_path) == {"epoch": [0.0, 1.0], "accuracy": [0.5, 0.6]}
