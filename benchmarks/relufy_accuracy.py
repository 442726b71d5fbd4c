"""From the model you have to a ReLU network: every way to relufy a trained network, paired by seed.

For each network and seed, a "user's model" is trained first: the network with its own activation
(MobileNetV2 0.35 with SiLU in place of every ReLU; keras.applications MobileNetV3Small, full, with
hard-swish and hard-sigmoid gates; EfficientNetB0 with SiLU and sigmoid gates), 15 epochs on digits
at 32 px through train.py's chain (`--init_from` the untrained network, `--mode relu`, which trains a
model as it is). Then every way to a ReLU network fine-tunes it for a budget of 10 % and 20 % of those
steps at a learning rate of 5e-4, each through train.py's chain too:

  relufy        --mode relufy with its first recipe (alpha 1 at half the steps, the user's model as
                teacher, batch-norm statistics re-estimated after strip)
  relufy_naive  relufy used as the library's defaults would: alpha 1 at 75 %, no teacher, BN kept
  relufy_*      one change to the first recipe each (no teacher, no BN re-estimation, alpha 1 at 25 %,
                g' as the ReLU branch's gradient, a learning rate of 2e-3), and the last two together,
                relufy_hybrid_lr_2e-3, which the rule below chose: Relufy.defaults since (RECIPE)
  swap_ft       every g swapped for ReLU (gates for ReLU6 hard-sigmoids), then fine-tuned (ReLU
                Strikes Back)
  swap_kd       the same, distilled from the user's model (KD-ReLUification)
  surrogate     the swapped network with g's derivative in the backward pass (SUGAR)
and two references: the swapped network without training (swap) and the ReLU network trained from
scratch for 15 epochs (relu_scratch) and for 15 plus the budget (relu_equal). The swapped network is
`strip` of `relufy` at alpha 1: the ReLU network with the user's weights.

Recipe variants (relufy_*) are scored on the validation split to choose the recipe; the tables report
the test split, each way against the recipe. The rule (`paired_stats.choose`): Relufy.defaults become
the candidate among relufy and the FIRST relufy_* variants with the highest mean validation top-1 of its
deployed network at the 20 % budget on MobileNetV2, over its 10 seeds (the hard-swish MobileNetV3-Small
is 0.5 points above ReLU from scratch at 32 px, too little to rank recipes); the report's last lines
weigh the candidates over every network (`across_networks`), the check that the choice transfers.
Every result is written to the JSON at once, each job runs in a fresh process, and a restart skips
what is done, so it runs in the background and resumes:

    nice python benchmarks/relufy_accuracy.py --work runs/relufy_bench --worker 0/2 &   # priority order
    nice python benchmarks/relufy_accuracy.py --work runs/relufy_bench --worker 1/2 &
    ... --networks mobilenet_v2_silu                                        # one network's seeds only
    ... --networks mobilenet_v3_small --seeds 0 1 2 3                       # these seeds' every budget
    python benchmarks/relufy_accuracy.py --report                           # tables into docs/
    python benchmarks/relufy_accuracy.py --quick --work /tmp/q               # smoke: 1 seed, 1 epoch
"""
import argparse
import os
import time
import traceback
from concurrent.futures.process import BrokenProcessPool

import results_store
from common import REPO, RESULTS, in_fresh_process, now
from paired_stats import choice_text, choose, gap_fraction, paired

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRETRAIN_EPOCHS = 15
LR = 5e-4
BUDGETS = (0.1, 0.2)
MEASURES = ("float", "stripped", "int8", "validation")
NETWORKS = ("mobilenet_v2_silu", "mobilenet_v3_small", "efficientnet_b0")
# The first recipe (Relufy.defaults until 2026-12-06), spelled out so that these records keep their
# meaning whatever the defaults become; fine_tune adds the learning rate, LR unless a way sets one.
FIRST_RECIPE = dict(mode="relufy", pea_end=0.5, distill="init", bn_reestimate=50, relu_gradient="relu")
WAYS = {  # name -> (start from "user" or "swapped", RunConfig settings)
    "relufy": ("user", FIRST_RECIPE),
    "relufy_naive": ("user", {**FIRST_RECIPE, "pea_end": 0.75, "distill": "none", "bn_reestimate": 0}),
    "relufy_no_kd": ("user", {**FIRST_RECIPE, "distill": "none"}),
    "relufy_no_bn": ("user", {**FIRST_RECIPE, "bn_reestimate": 0}),
    "relufy_end_0.25": ("user", {**FIRST_RECIPE, "pea_end": 0.25}),
    "relufy_hybrid": ("user", {**FIRST_RECIPE, "relu_gradient": "g"}),
    "relufy_lr_2e-3": ("user", {**FIRST_RECIPE, "lr": 2e-3}),
    "relufy_hybrid_lr_2e-3": ("user", {**FIRST_RECIPE, "relu_gradient": "g", "lr": 2e-3}),
    "swap_ft": ("swapped", dict(mode="relu")),
    "swap_kd": ("swapped", dict(mode="relu", distill="teacher:USER")),
    "surrogate": ("swapped", dict(mode="surrogate")),
}
RECIPE = "relufy_hybrid_lr_2e-3"  # The way that is Relufy.defaults: the reference of every table.
G = {"mobilenet_v2_silu": "silu", "mobilenet_v3_small": "hard_swish", "efficientnet_b0": "silu"}
# At 32 px the last squeeze-excite blocks of these two act on 1x1 maps, where a gate is x * f(x) of
# the same value, not a ReLU network: `pea-tflite check` refuses their int8 files (rightly), so
# they are scored as float (stripped) networks only.
NO_INT8 = {"mobilenet_v3_small", "efficientnet_b0"}


def user_network(name, k, seed):
    """The untrained network with its own activation, [0, 1] images of 32x32x1 (digits) in, 10 logits out."""
    import pea_keras
    from pea_keras.training.tasks.classification import archs

    k.utils.set_random_seed(seed)
    if name == "mobilenet_v2_silu":
        return pea_keras.replace_relu(archs.build("mobilenet_v2", k, (32, 32, 1), 10, width=0.35), "silu")
    inputs = k.Input((32, 32, 1), name="image")
    if name == "mobilenet_v3_small":
        net = k.applications.MobileNetV3Small(input_shape=(32, 32, 1), weights=None, classes=10,
                                               minimalistic=False, include_preprocessing=False,
                                               classifier_activation=None)
        outputs = net(inputs)
    else:  # EfficientNet rescales 0-255 pixels itself.
        net = k.applications.EfficientNetB0(input_shape=(32, 32, 1), weights=None, classes=10,
                                            classifier_activation=None)
        outputs = net(k.layers.Rescaling(255.0)(inputs))
    for layer in net.layers:  # As archs.build does: 0.99/0.999 stay at chance after short runs.
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = 0.9
    return k.Model(inputs, outputs, name=name)


def _record(metrics, **extra):
    top1 = metrics["top1"]
    return {"float": top1["pea"], "stripped": top1.get("stripped"), "int8": top1.get("int8"),
            "validation": top1.get("validation"), "validation_of": "deployed", "steps": metrics["total_steps"],
            "train_wall_s": metrics["wall_time_s"]["train"], "finished_utc": now(), **extra}


def _train(work, job, **settings):
    from pea_keras.training import config as config_lib
    from pea_keras.training import run

    folder = os.path.join(work, "runs", job.replace("/", "_"))
    # Every ReLU network here keeps its squeeze-excite gates as ReLU6 hard sigmoids: named, accepted.
    config = config_lib.recipe(verbose="0", overwrite=True, output_dir=folder, allow_gates=True,
                               tflite_dir=os.path.join(folder, "tflite"), **settings)
    return run.run(config), folder


def pretrain(work, net, seed, epochs):
    """The user's model of (net, seed): its file, its steps per epoch and its scores."""
    import keras

    folder = os.path.join(work, "models", f"{net}_{seed}")
    os.makedirs(folder, exist_ok=True)
    untrained = os.path.join(folder, "untrained.keras")
    user_network(net, keras, seed).save(untrained)
    metrics, run_dir = _train(work, f"{net}/pretrain/{seed}", mode="relu", init_from=untrained, epochs=epochs,
                              seed=seed, export=False)
    os.replace(os.path.join(run_dir, "pea_model.keras"), os.path.join(folder, "user.keras"))
    return _record(metrics, steps_per_epoch=metrics["steps_per_epoch"])


def _swap(path, target):
    """The ReLU network of the model in `path` (relufy, alpha 1, strip), saved to `target`."""
    import pea_keras

    model = pea_keras.relufy(pea_keras.load_model(path))
    pea_keras.set_alpha(model, 1.0)
    pea_keras.strip(model).save(target)


def fine_tune(work, net, seed, way, budget, steps_per_epoch, pretrain_epochs):
    """One way at one budget, from the (net, seed) user's model."""
    folder = os.path.join(work, "models", f"{net}_{seed}")
    start, settings = WAYS[way]
    settings = {"lr": LR, **settings}
    if settings.get("distill") == "teacher:USER":
        settings["distill"] = f"teacher:{os.path.join(folder, 'user.keras')}"
    steps = max(1, round(budget * pretrain_epochs * steps_per_epoch))
    epochs = max(1, min(3, steps // 4))  # Whole epochs of equal steps: the recipe's fractions are of steps.
    metrics, _ = _train(work, f"{net}/{way}_{budget}/{seed}", init_from=os.path.join(folder, f"{start}.keras"),
                        export=net not in NO_INT8,
                        activation=G[net], seed=seed, epochs=epochs,
                        steps_per_epoch=max(1, steps // epochs), **settings)
    return _record(metrics)


def scratch(work, net, seed, epochs):
    folder = os.path.join(work, "models", f"{net}_{seed}")
    metrics, _ = _train(work, f"{net}/relu_scratch_{epochs}/{seed}", mode="relu", export=net not in NO_INT8,
                        init_from=os.path.join(folder, "untrained_relu.keras"), epochs=epochs, seed=seed)
    return _record(metrics)


def scorer(path, seed):
    """score(model_path, split) -> top-1 on the "test" or "validation" split train.py makes for `seed`
    (prepared once, for a model like the one in `path`)."""
    import pea_keras
    from pea_keras.training import config as config_lib
    from pea_keras.training import run

    r = run.prepare(config_lib.recipe(mode="relu", init_from=path, seed=seed, verbose="0"))
    _, val, test = r.splits
    splits = {"validation": val, "test": test}
    return lambda model_path, split: r.task.evaluate(pea_keras.load_model(model_path), splits[split], r.data).score


def swapped_score(work, net, seed):
    """Writes the swapped networks (trained and untrained) and scores the trained one as it is."""
    folder = os.path.join(work, "models", f"{net}_{seed}")
    _swap(os.path.join(folder, "user.keras"), os.path.join(folder, "swapped.keras"))
    _swap(os.path.join(folder, "untrained.keras"), os.path.join(folder, "untrained_relu.keras"))
    path = os.path.join(folder, "swapped.keras")
    score = scorer(path, seed)
    return {"float": score(path, "test"), "validation": score(path, "validation"), "finished_utc": now()}


# Run first, for every seed: the recipe candidates and the published ways at the larger budget.
FIRST = ("relufy", "relufy_hybrid", "relufy_lr_2e-3", "relufy_hybrid_lr_2e-3", "swap_ft", "swap_kd", "surrogate")
# What the rule chooses among, the recipe first (it keeps a tie).
CANDIDATES = [RECIPE] + [way for way in FIRST if way.startswith("relufy") and way != RECIPE]


def _blocks(quick):
    """[(net, seed, jobs)] in priority order: every seed's first block (the user's model, the swap and
    the 20 % budget), then the smaller budgets, then the one-change ablations. A block's jobs depend
    on its first ones, so one worker runs a whole block; a later block whose seed has no user's
    model yet is skipped until the next start."""
    if quick:
        net = "mobilenet_v2_silu"
        return [(net, 0, [(net, "pretrain", "", 0, 0), (net, "swap", "", 0, 0),
                          (net, "way", RECIPE, 0.1, 0), (net, "way", "swap_ft", 0.1, 0)])]

    def first(net, seed):
        return ([(net, "pretrain", "", 0, seed), (net, "swap", "", 0, seed),
                 (net, "scratch", "", PRETRAIN_EPOCHS, seed)]
                + [(net, "way", way, BUDGETS[-1], seed) for way in FIRST])

    def smaller(net, seed):  # The same ways at the smaller budgets, and ReLU from scratch at equal compute.
        return ([(net, "way", way, budget, seed) for budget in BUDGETS[-2::-1] for way in FIRST]
                + [(net, "scratch", "", round(PRETRAIN_EPOCHS * (1 + b)), seed) for b in BUDGETS])

    def ablations(net, seed):
        return [(net, "way", way, budget, seed) for budget in BUDGETS[::-1] for way in WAYS if way not in FIRST]

    compact, large = NETWORKS[:2], NETWORKS[2:]
    return ([(n, s, first(n, s)) for seeds in (range(5), range(5, 10)) for s in seeds for n in compact]
            + [(n, s, smaller(n, s)) for s in range(10) for n in compact]
            + [(n, s, first(n, s)) for s in range(5) for n in large]
            + [(n, s, smaller(n, s)) for s in range(5) for n in large]
            + [(n, s, ablations(n, s)) for s in range(10) for n in compact]
            + [(n, s, ablations(n, s)) for s in range(5) for n in large])


def plan(quick, worker=(0, 1), networks=NETWORKS, seeds=None):
    """(net, job kind, way, budget, seed) of this worker (every N-th block of `networks` and `seeds`), in
    priority order."""
    index, count = worker
    blocks = [jobs for net, seed, jobs in _blocks(quick) if net in networks and (seeds is None or seed in seeds)]
    return [job for i, jobs in enumerate(blocks) if i % count == index for job in jobs]


def key(net, kind, way, budget, seed):
    name = {"pretrain": "user", "swap": "swap", "scratch": f"relu_scratch_{budget}"}.get(kind, f"{way}_{budget}")
    return f"{net}/{name}/{seed}"


EMPTY = {"runs": {}, "failed": {}}


def read_store(path):
    return results_store.read(path, EMPTY)


def update_store(path, change):
    results_store.update(path, EMPTY, change)


def worker(args):
    epochs = 1 if args.quick else PRETRAIN_EPOCHS
    for job in plan(args.quick, args.worker, args.networks, args.seeds):
        net, kind, way, budget, seed = job
        if args.only and kind != args.only:
            continue
        store = read_store(args.json)
        name = key(*job)
        if name in store["runs"] or name in store["failed"]:
            continue
        user = store["runs"].get(key(net, "pretrain", "", 0, seed))
        swapped = key(net, "swap", "", 0, seed) in store["runs"]
        if kind != "pretrain" and (user is None or kind != "swap" and not swapped):
            continue  # What it starts from failed.
        t0 = time.time()
        if kind == "pretrain":
            call = pretrain, args.work, net, seed, epochs
        elif kind == "swap":
            call = swapped_score, args.work, net, seed
        elif kind == "scratch":
            call = scratch, args.work, net, seed, budget if not args.quick else 1
        else:
            call = fine_tune, args.work, net, seed, way, budget, user["steps_per_epoch"], epochs
        try:
            result = in_fresh_process(*call)
        except BrokenProcessPool:
            print(f"{name}: its process was killed (out of memory?); left for the next start", flush=True)
            continue
        except Exception as e:  # noqa: BLE001 (recorded; the other jobs go on)
            traceback.print_exc()
            update_store(args.json, lambda s, n=name, e=e: s["failed"].__setitem__(n, f"{type(e).__name__}: {e}"[:400]))
            continue
        update_store(args.json, lambda s, n=name, r=result: s["runs"].__setitem__(n, r))
        print(f"{name:44s} test {100 * result['float']:.2f}  {time.time() - t0:.0f} s", flush=True)


def rescore(args):
    """Scores the validation split of every recorded run on its deployed network (relu_model.keras in its run
    directory): train.py scored the trained model there before, which for a recipe with batch-norm
    re-estimation is not the network it deploys. A file that does not reproduce the recorded test score is
    left as it is, and said."""
    scorers = {}  # Per (network, seed): the splits are the seed's, the input shape the network's.
    for name, record in sorted(read_store(args.json)["runs"].items()):
        path = os.path.join(args.work, "runs", name.replace("/", "_"), "relu_model.keras")
        if record.get("validation_of") == "deployed" or not os.path.exists(path):
            continue
        net, _, seed = name.split("/")
        if (net, seed) not in scorers:
            scorers[net, seed] = scorer(path, int(seed))
        score = scorers[net, seed]
        if score(path, "test") != record["stripped"]:
            print(f"{name}: {path} does not reproduce the recorded test score; left as it is", flush=True)
            continue
        value = score(path, "validation")
        update_store(args.json, lambda s, n=name, v=value: s["runs"][n].update(validation=v, validation_of="deployed"))
        print(f"{name:44s} validation {100 * record['validation']:.2f} -> {100 * value:.2f}", flush=True)


def _values(store, net, name, measure):
    """{seed: value} of one configuration."""
    found = {}
    for k, r in store["runs"].items():
        n, config, seed = k.split("/")
        if n == net and config == name and r.get(measure) is not None:
            found[int(seed)] = r[measure]
    return found


def across_networks(store, budget):
    """One line: each relufy candidate's validation top-1 averaged over the networks where every candidate
    has a common seed (each network's mean over its own common seeds), and the best of them."""
    per_net = {}
    for net in NETWORKS:
        validation = {w: _values(store, net, f"{w}_{budget}", "validation") for w in CANDIDATES}
        _, _, means = choose(validation)
        if len(means) == len(CANDIDATES):  # Every candidate, over seeds they share.
            per_net[net] = means
    if not per_net:
        return f"{int(100 * budget)} %, across networks: no network has every candidate yet"
    # The rule itself, with networks in the place of seeds.
    best, _, means = choose({w: {net: m[w] for net, m in per_net.items()} for w in CANDIDATES})
    return (f"{int(100 * budget)} %, across {len(per_net)} networks ({', '.join(per_net)}): {best} ("
            + ", ".join(f"{w} {100 * m:.2f}" for w, m in means.items()) + ")")


def report(store):
    """Per network and budget: each way's top-1, its share of the gap from ReLU from scratch to the
    user's model (95 % bootstrap interval) and its paired difference to the recipe, on the test split
    (stripped, int8) and on the validation split, where the recipe is chosen (both networks
    deployed, stripped)."""
    lines = []
    for net in NETWORKS:
        if not _values(store, net, "user", "float"):
            continue
        choices = [f"{int(100 * b)} %: " + choice_text({w: _values(store, net, f"{w}_{b}", "validation")
                                                        for w in CANDIDATES})
                   for b in BUDGETS[::-1]]
        lines += [f"\n### {net}\n", *choices, "", "| way | budget | measure | n | top-1 % | gap recovered [95 % CI] | "
                  "vs recipe: pt [95 % CI] |", "|---|---|---|---|---|---|---|"]
        for budget in BUDGETS:
            for way in WAYS:
                name = f"{way}_{budget}"
                for measure in ("stripped", "int8", "validation"):
                    got = _values(store, net, name, measure)
                    if not got:
                        continue
                    of_user, of_scratch = ("validation",) * 2 if measure == "validation" else ("float", "stripped")
                    high = _values(store, net, "user", of_user)
                    low = _values(store, net, f"relu_scratch_{PRETRAIN_EPOCHS}", of_scratch)
                    seeds = sorted(set(got) & set(low) & set(high))
                    share = gap_fraction([got[s] for s in seeds], [low[s] for s in seeds], [high[s] for s in seeds])
                    ref = _values(store, net, f"{RECIPE}_{budget}", measure)
                    common = sorted(set(got) & set(ref))
                    d = paired([got[s] for s in common], [ref[s] for s in common]) if way != RECIPE else None
                    lines.append(
                        f"| {way} | {int(budget * 100)} % | {measure} | {len(got)} | "
                        f"{100 * sum(got.values()) / len(got):.2f} | "
                        + (f"{100 * share['fraction']:.0f} % [{100 * share['ci95'][0]:.0f}, "
                           f"{100 * share['ci95'][1]:.0f}]" if share else "-") + " | "
                        + (f"{100 * d['mean']:+.2f} [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
                           if d and d["ci95"] else "-") + " |")
        refs = {"user's model (g)": _values(store, net, "user", "float"),
                "ReLU from scratch, 15 epochs": _values(store, net, f"relu_scratch_{PRETRAIN_EPOCHS}", "stripped"),
                "swapped, no training": _values(store, net, "swap", "float")}
        for budget in BUDGETS:
            refs[f"ReLU from scratch, equal compute ({int(100 * budget)} %)"] = _values(
                store, net, f"relu_scratch_{round(PRETRAIN_EPOCHS * (1 + budget))}", "stripped")
        lines += ["", "| reference | n | top-1 % |", "|---|---|---|"]
        lines += [f"| {label} | {len(v)} | {100 * sum(v.values()) / len(v):.2f} |" for label, v in refs.items() if v]
    lines += ["", "### Across networks", "", *(across_networks(store, b) for b in BUDGETS[::-1])]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=os.path.join(REPO, "runs", "relufy_bench"),
                        help="Folder for the models and run directories (kept for resuming).")
    parser.add_argument("--json", default=os.path.join(RESULTS, "relufy_accuracy.json"))
    parser.add_argument("--report", action="store_true", help="Print the tables of the JSON and exit.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: one seed, one epoch, two ways.")
    parser.add_argument("--worker", default=(0, 1), type=lambda v: tuple(map(int, v.split("/"))),
                        help="I/N: run every N-th block of jobs, starting at the I-th (workers share the JSON).")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=NETWORKS,
                        help="Run only these networks' jobs (say, the one whose evidence is short).")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="Run only these seeds' jobs (say, a smaller budget for the seeds already in).")
    parser.add_argument("--rescore_validation", action="store_true",
                        help="Score the validation split of recorded runs on their deployed networks, and exit.")
    parser.add_argument("--only", choices=("pretrain", "swap", "scratch", "way"), help="Run only this kind of job.")
    args = parser.parse_args()
    if args.report:
        print(report(read_store(args.json)))
        return
    if args.rescore_validation:
        rescore(args)
        return
    worker(args)


if __name__ == "__main__":
    main()
