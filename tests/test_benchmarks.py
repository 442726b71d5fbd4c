"""Every benchmark still runs against the library it measures, in its smallest setting.

Nothing here is timed; these runs guard the code paths, so that a renamed helper fails here
and not an hour into an evidence run.
"""
import importlib.util
import json
import subprocess
import sys
import time

import pytest
from fresh import REPO, run

RATIOS = ["pea_blend / relu", "naive_blend / relu", "g_only / relu", "pea_relu / relu",
          "pea_blend / g_only", "pea_blend / naive_blend"]

BENCHMARKS = REPO / "benchmarks"


def run_benchmark(name, *args):
    done = run(sys.executable, BENCHMARKS / name, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def compact(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import compact_accuracy

    monkeypatch.setitem(compact_accuracy.WIDTHS, "tiny", 1.0)
    return compact_accuracy


@pytest.mark.slow
@pytest.mark.parametrize("config", ["pea_silu", "g_silu", "learned_alpha", "fixed_0.5", "pea_silu_keras3",
                                    "pea_hybrid_silu_bn"])
def test_compact_accuracy_trains_scores_and_quantizes_one_configuration(compact, config):
    """Through train.py's chain: the record's scores are the run's, ablations stripped by force."""
    r = compact.train_one("tiny", config, seed=0, epochs=1)

    assert r["config"] == config and r["steps"] == 19
    assert r["keras"] == compact.CONFIGS[config].get("keras", compact.KERAS)
    assert len(r["epoch_cpu_s"]) == 1 and r["train_cpu_s"] == sum(r["epoch_cpu_s"])
    if config == "g_silu":  # SiLU everywhere cannot deploy ReLU-only: no strip, no int8 file.
        assert r["alpha_final"] == 0.0 and r["stripped"] is None and r["int8"] is None
        return
    assert r["int8"] is not None and r["int8_bytes"] > 0 and 0 < r["validation"] <= 1
    if config == "pea_hybrid_silu_bn":  # Re-estimated statistics: the stripped network is scored on its own.
        assert r["alpha_final"] == 1.0
    elif config.startswith("pea_silu"):  # The schedule ends at alpha 1: stripping changes nothing.
        assert r["alpha_final"] == 1.0 and r["stripped"] == r["float"]
    elif config == "fixed_0.5":
        assert r["alpha_final"] == 0.5
    else:  # A learned alpha stays in [0, 1] (it moved from 0), and the forced strip deploys ReLU.
        assert 0.0 < r["alpha_final"] <= 1.0


def test_recipe_study_reports_gap_shares_validation_and_paired_differences(tmp_path):
    """`--study recipes --report` of a store: per network the gap share of each way (ReLU stripped -> g float),
    the validation top-1 the recipe is chosen on, and the paired differences against pea_silu and sugar_silu."""
    top1 = {"relu": 0.80, "g_silu": 0.90, "pea_silu": 0.85, "sugar_silu": 0.86, "pea_hybrid_silu_bn": 0.88}
    runs = {f"mobilenet_v3_small/{c}/{s}": {
        "arch": "mobilenet_v3_small", "config": c, "seed": s, "float": v + s / 100, "stripped": v + s / 100,
        "int8": v + s / 100, "validation": v, "train_cpu_s": 10.0} for c, v in top1.items() for s in range(3)}
    (tmp_path / "r.json").write_text(json.dumps({"runs": runs, "equal_cost": {}}))
    out = run_benchmark("compact_accuracy.py", "--study", "recipes", "--report", "--json", str(tmp_path / "r.json"))
    assert "| pea_hybrid_silu_bn | 3 | 89.00 | 89.00 | 80 % [80, 80] | 80 % [80, 80] | 88.00 (3) | 1.00 |" in out
    assert "| pea_silu | 3 | 86.00 | 86.00 | 50 % [50, 50] | 50 % [50, 50] | 85.00 (3) | 1.00 |" in out
    assert ("| pea_hybrid_silu_bn | validation | 3 | 88.00 | 0.00 | +3.00 [+3.00, +3.00] | 3/0/0 | "
            "+2.00 [+2.00, +2.00] | 3/0/0 |") in out
    assert "kd_relu" not in out and "| pea_silu_bn |" not in out  # Only the study's ways that ran.
    assert "choice on validation (3 common seeds): pea_hybrid_silu_bn (pea_silu 85.00, pea_hybrid_silu_bn 88.00)" in out


def test_the_recipe_rule_takes_the_best_mean_validation_over_common_seeds_and_keeps_a_tie(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    from paired_stats import choose

    # Seed 2 is not common: b's 0.99 there does not count, and over seeds 0-1 b ties the incumbent a.
    assert choose({"a": {0: 0.9, 1: 0.8}, "b": {0: 0.8, 1: 0.9, 2: 0.99}, "c": {0: 0.7, 1: 0.9}}) == (
        "a", [0, 1], {"a": pytest.approx(0.85), "b": pytest.approx(0.85), "c": pytest.approx(0.8)})
    assert choose({"a": {0: 0.8}, "b": {0: 0.81}})[0] == "b"
    assert choose({"a": {0: 0.8}, "b": {}}) == ("a", [0], {"a": 0.8})  # b has not run.
    assert choose({"a": {0: 0.8}, "b": {1: 0.9}}) == (None, [], {})


def test_paired_difference_interval_and_record(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    from paired_stats import mean_interval, paired

    d = paired([0.9, 0.8, 0.7, 0.9, None], [0.8, 0.8, 0.6, 0.7, 0.5])  # The unpaired seed is dropped.

    assert d["n"] == 4 and d["mean"] == pytest.approx(0.1)
    assert (d["wins"], d["ties"], d["losses"]) == (3, 1, 0)
    # t(0.975, 3) = 3.182; std of (0.1, 0, 0.1, 0.2) = 0.08165; t = 0.1 / (0.08165 / 2) = 2.449.
    assert d["ci95"] == pytest.approx([0.1 - 3.182 * 0.08165 / 2, 0.1 + 3.182 * 0.08165 / 2], abs=1e-3)
    assert d["t"] == pytest.approx(2.449, abs=1e-3) and d["p"] == pytest.approx(0.0917, abs=1e-3)
    assert paired([None], [0.5]) is None and paired([0.5], [0.4])["ci95"] is None
    assert mean_interval([0.8, 0.9])["ci95"] == pytest.approx([0.85 - 12.706 * 0.0707 / 1.414,
                                                               0.85 + 12.706 * 0.0707 / 1.414], abs=1e-3)


@pytest.mark.slow
def test_accuracy_benchmark(tmp_path):
    run_benchmark("accuracy.py", "--arch", "tiny", "--epochs", "1", "--seeds", "1", "--variants", "digits",
                  "--configs", "relu", "pea_silu", "--json", str(tmp_path / "a.json"),
                  "--plot", str(tmp_path / "a.png"), "--schedule_plot", str(tmp_path / "s.png"))
    result = json.loads((tmp_path / "a.json").read_text())
    assert {(r["config"], r["seed"]) for r in result["runs"]} == {("relu", 0), ("pea_silu", 0)}
    assert (tmp_path / "a.png").stat().st_size > 0


@pytest.mark.slow
def test_train_step_benchmark(tmp_path):
    run_benchmark("train_step.py", "--arch", "tiny", "--image_size", "16", "--rounds", "2", "--warmup", "1",
                  "--batch", "8", "--memory_batch", "16", "--json", str(tmp_path / "t.json"))
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["keras"], r["arch"], r["image_size"]) for r in rows] == [("keras", "tiny", 16), ("tf_keras", "tiny", 16)]
    for row in rows:
        assert set(row["ratios"]) == set(RATIOS)
        assert all(s["q1"] <= s["median"] <= s["q3"] for s in row["ratios"].values())
        assert set(row["mb"]) == {"relu", "pea_blend", "naive_blend", "pea_relu", "g_only"}


@pytest.mark.slow
def test_train_step_check_fails_on_a_ratio_outside_its_limit(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import train_step

    ratio = {"median": 1.10, "q1": 1.08, "q3": 1.12}
    row = {"ratios": {name: dict(ratio) for name, *_ in train_step.RATIOS},
           "mb": {"pea_blend": 100.0, "naive_blend": 90.0, "g_only": 100.0, "relu": 50.0, "pea_relu": 50.0}}
    found = train_step.failures(row)
    assert [f.split(" ")[0] for f in found] == ["pea_relu", "pea_blend", "pea_blend"]
    assert "pea_blend memory 100 MB > naive_blend 90 MB" in found[2]
    row["ratios"]["pea_blend / g_only"]["q1"] = 1.04  # The median is above, the noise reaches below.
    row["ratios"]["pea_relu / relu"]["q1"] = 1.0
    row["mb"]["naive_blend"] = 120.0
    assert train_step.failures(row) == []


@pytest.mark.slow
def test_convert_cost_benchmark(tmp_path):
    stdout = run_benchmark("convert_cost.py", "--image_size", "32", "--samples", "8", "--repeats", "1",
                           "--json", str(tmp_path / "c.json"))
    result = json.loads((tmp_path / "c.json").read_text())
    assert len(result["ratios"]) == 1 and result["ratios"][0] > 0 and "convert / bare" in stdout


@pytest.mark.slow
def test_deploy_benchmark(tmp_path):
    run_benchmark("deploy.py", "--arch", "tiny", "--quick", "--train_steps", "2", "--runs", "2",
                  "--repeats", "1", "--micro_images", "4", "--json", str(tmp_path / "d.json"))
    result = json.loads((tmp_path / "d.json").read_text())
    assert result["same_op_list_pea_vs_relu"]
    pea = next(r for r in result["rows"] if r["config"] == "pea_silu")
    assert pea["relu_only"] and pea["micro"] and pea["micro_agreement"] == 1.0
    # Vela's estimates for every int8 file on the three Ethos-U columns; the ReLU-only file runs on the NPU alone.
    assert [r["config"] for r in result["rows"] if "ethos_u" in r] == [
        "pea_silu", "relu", "g_silu", "g_hard_swish", "g_gelu", "g_mish"]
    assert list(pea["ethos_u"]) == ["ethos-u55-128", "ethos-u65-256", "ethos-u85-256"]
    assert all(e["cycles"] > 0 and e["cpu_operators"] == {} for e in pea["ethos_u"].values())


@pytest.mark.slow
def test_segmentation_benchmark_quick(tmp_path):
    run_benchmark("segmentation_accuracy.py", "--quick", "--json", str(tmp_path / "seg.json"))
    result = json.loads((tmp_path / "seg_quick.json").read_text())
    assert {r["config"] for r in result["runs"]} == {"relu", "pea_silu"}
    assert all(r["relu_only"] for r in result["runs"])


@pytest.mark.slow
def test_folder_augmentation_trains_a_user_folder_with_and_without_augmentation(tmp_path):
    out = tmp_path / "folder.json"
    printed = run_benchmark("folder_augmentation.py", "--quick", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["run"] for r in rows] == ["defaults", "--noaugment"]
    assert rows[0]["augmentation"].startswith("pad-and-crop (reflect 2 px, random crop back), no flips")
    assert rows[1]["augmentation"] == "no crop, no flips: augment=none"
    assert rows[0]["train_examples"] == 320 and "defaults     float" in printed


@pytest.mark.slow
def test_backends_benchmark(tmp_path):
    backends = ["tensorflow", "jax"] + (["torch"] if importlib.util.find_spec("torch") else [])
    stdout = run_benchmark("backends.py", "--backends", ",".join(backends), "--arch", "tiny", "--width", "1.0",
                           "--steps", "2", "--warmup", "1", "--repeats", "1", "--batch", "8",
                           "--json", str(tmp_path / "b.json"))
    ratios = json.loads((tmp_path / "b.json").read_text())["ratio_to_relu"]
    assert sorted(ratios) == sorted(backends)
    assert all(set(row) == {"pea_blend", "pea_relu", "g_only", "relu_vs_tf"} and min(row.values()) > 0
               for row in ratios.values())
    assert ratios["tensorflow"]["relu_vs_tf"] == 1.0
    assert " ms" not in stdout and "ms/step" not in stdout  # Ratios only.


@pytest.mark.slow
def test_relufy_deploy_benchmark(tmp_path):
    stdout = run_benchmark("relufy_deploy.py", "--quick", "--json", str(tmp_path / "r.json"))
    networks = json.loads((tmp_path / "r.json").read_text())["networks"]
    assert list(networks) == ["mobilenet_v2_silu", "mobilenet_v3_small", "efficientnet_b0"]
    for net, rows in networks.items():
        # The g file keeps its activations (SiLU, hard-swish, sigmoid); the relufied one passes the check.
        assert not rows["g"]["relu_only"] and rows["g"]["violations"] > 0, net
        assert rows["relufied"]["relu_only"] and rows["relufied"]["violations"] == 0, net
        assert rows["relufied"]["micro"] and rows["relufied"]["arena_bytes"] > 0
        assert all(e["cycles"] > 0 and e["cpu_operators"] == {} for e in rows["relufied"]["ethos_u"].values())
        assert set(rows["g / relufied"]) == {"bytes", "arena_bytes", "builtin_ms", "xnnpack_ms",
                                             "ethos-u55-128", "ethos-u65-256"}
        assert f"| {net} | **g / relufied** |" in stdout


def test_the_relufy_benchmarks_recipe_way_is_the_modes_recipe_and_the_first_recipe_stays_pinned(monkeypatch):
    """Its records keep their meaning when the defaults change: the recipe way trains what `--mode
    relufy` trains, and the first recipe's ways what they trained before the change."""
    monkeypatch.syspath_prepend(BENCHMARKS)
    import relufy_accuracy

    from pea_keras.training import config as config_lib

    def trained(way):
        _, settings = relufy_accuracy.WAYS[way]
        return config_lib.recipe(**{"lr": relufy_accuracy.LR, **settings})

    assert trained(relufy_accuracy.RECIPE) == config_lib.recipe("relufy")
    first = trained("relufy")
    assert (first.lr, first.relu_gradient, first.pea_end, first.distill, first.bn_reestimate) == (
        5e-4, "relu", 0.5, "init", 50)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_job_in_a_fresh_process_returns_its_result_and_ends_with_its_worker(tmp_path):
    """A benchmark worker runs each job in a fresh process; stopping the worker (as a session's end
    does) stops that job too, instead of leaving it to run on without anyone to record it."""
    script = tmp_path / "worker.py"
    script.write_text(f"""import os, sys, time
sys.path.insert(0, {str(BENCHMARKS)!r})
from common import in_fresh_process


def job(path, seconds):
    open(path, "w").write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


if __name__ == "__main__":
    print(in_fresh_process(job, sys.argv[1], float(sys.argv[2])) != os.getpid(), flush=True)
""")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "quick"), "0"], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr

    worker = subprocess.Popen([sys.executable, str(script), str(tmp_path / "pid"), "600"])
    deadline = time.monotonic() + 60
    while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.1)
    job_pid = int((tmp_path / "pid").read_text())
    worker.terminate()
    worker.wait(timeout=60)
    deadline = time.monotonic() + 30
    while not _ended(job_pid):
        assert time.monotonic() < deadline, "the job outlived its worker"
        time.sleep(0.1)


def _ended(pid):
    """Gone, or a zombie whose parent ended without waiting for it."""
    try:
        return "(zombie)" in open(f"/proc/{pid}/status").read()
    except OSError:
        return True


def test_the_relufy_report_averages_each_candidate_over_the_networks_that_ran_every_candidate(monkeypatch):
    """A candidate that leads on one network and trails on another is weighed by the networks' means,
    each over its own common seeds; a network missing a candidate is left out."""
    monkeypatch.syspath_prepend(BENCHMARKS)
    import relufy_accuracy as r

    other = next(w for w in r.CANDIDATES if w != r.RECIPE)
    runs = {}
    for net, seeds, recipe, rival in (("mobilenet_v2_silu", (0, 1), 0.90, 0.80), ("efficientnet_b0", (0,), 0.80, 0.96)):
        for seed in seeds:
            for way in r.CANDIDATES:
                value = {r.RECIPE: recipe, other: rival}.get(way, 0.5)
                runs[f"{net}/{way}_0.2/{seed}"] = {"validation": value + 0.01 * seed}
    runs["mobilenet_v3_small/relufy_0.2/0"] = {"validation": 0.0}  # Not every candidate: left out.
    line = r.across_networks({"runs": runs}, 0.2)
    assert line.startswith(f"20 %, across 2 networks (mobilenet_v2_silu, efficientnet_b0): {other} (")
    assert f"{r.RECIPE} 85.25" in line and f"{other} 88.25" in line
    assert r.across_networks({"runs": runs}, 0.1) == "10 %, across networks: no network has every candidate yet"


@pytest.mark.slow
def test_relufy_accuracy_benchmark_records_resumes_and_rescores(tmp_path):
    """The smoke run trains the user's model and two ways through train.py's chain; a restart skips
    what is recorded; `--rescore_validation` scores a run's deployed network on the validation split,
    as train.py now records it, and leaves a file that does not reproduce its test score alone."""
    args = ("--quick", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "r.json"))
    stdout = run_benchmark("relufy_accuracy.py", *args)
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    net = "mobilenet_v2_silu"
    recipe = "relufy_hybrid_lr_2e-3"  # The way that is --mode relufy's recipe.
    assert set(runs) == {f"{net}/user/0", f"{net}/swap/0", f"{net}/{recipe}_0.1/0", f"{net}/swap_ft_0.1/0"}
    assert all(0 <= r["validation"] <= 1 for r in runs.values()) and "test" in stdout
    assert run_benchmark("relufy_accuracy.py", *args) == ""  # Nothing left to run.

    recorded = runs[f"{net}/{recipe}_0.1/0"]
    changed = {**runs, f"{net}/{recipe}_0.1/0": {**recorded, "validation": -1.0, "validation_of": "trained"},
               f"{net}/swap_ft_0.1/0": {**runs[f"{net}/swap_ft_0.1/0"], "stripped": -1.0, "validation_of": "trained"}}
    (tmp_path / "r.json").write_text(json.dumps({"runs": changed, "failed": {}}))
    stdout = run_benchmark("relufy_accuracy.py", *args[1:], "--rescore_validation")
    rescored = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert rescored[f"{net}/{recipe}_0.1/0"]["validation"] == recorded["validation"]
    assert rescored[f"{net}/swap_ft_0.1/0"]["validation_of"] == "trained"
    assert "swap_ft_0.1_0/relu_model.keras does not reproduce the recorded test score; left as it is" in stdout
    assert f"| {recipe} | 10 % | int8 | 1 |" in run_benchmark("relufy_accuracy.py", "--report", "--json",
                                                             str(tmp_path / "r.json"))
