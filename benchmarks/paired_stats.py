"""Statistics over seeds shared by the accuracy benchmarks: a mean with its 95 % t interval,
paired differences (same seed = same initial weights and batches, so the seed's luck cancels),
and the one table they are reported in."""
import math
import statistics


def _half_width(sd, n):
    """Half the 95 % t interval of a mean of n values with standard deviation sd."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def mean_interval(values):
    """{n, mean, std, ci95} of values (ci95 only from two values on)."""
    n = len(values)
    row = {"n": n, "mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else 0.0}
    if n > 1:
        half = _half_width(row["std"], n)
        row["ci95"] = [row["mean"] - half, row["mean"] + half]
    return row


def paired(a, b):
    """a - b over the seeds both have (same order; pairs with a None dropped): n, mean, std, 95 %
    t interval, t, two-sided p, wins/ties/losses. None when no pair is left."""
    d = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    n = len(d)
    if not n:
        return None
    mean = statistics.fmean(d)
    sd = statistics.stdev(d) if n > 1 else 0.0
    ci = t = p = None
    if n > 1:
        from scipy import stats

        half = _half_width(sd, n)
        ci = [mean - half, mean + half]
        if sd > 0:
            t = mean / (sd / math.sqrt(n))
            p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"n": n, "mean": mean, "std": sd, "ci95": ci, "t": t, "p": p, "wins": sum(x > 0 for x in d),
            "ties": sum(x == 0 for x in d), "losses": sum(x < 0 for x in d)}


def paired_rows(runs, configs, measures, references):
    """One row per (config, measure) of `runs` ({config: {seed: {measure: value}}}): n, seeds, mean
    with its interval, and `vs_<ref>` paired differences against each reference listed before it
    (a reference is compared only with the references before it)."""
    rows = []
    for config in configs:
        for measure in measures:
            values = {s: r.get(measure) for s, r in runs.get(config, {}).items() if r.get(measure) is not None}
            row = {"config": config, "measure": measure, "n": len(values), "seeds": sorted(values)}
            if values:
                row.update(mean_interval([values[s] for s in row["seeds"]]))
            for ref in references:
                if config in references and references.index(config) <= references.index(ref):
                    continue
                common = [s for s in row["seeds"] if s in runs.get(ref, {})]
                row[f"vs_{ref}"] = paired([values[s] for s in common], [runs[ref][s].get(measure) for s in common])
            rows.append(row)
    return rows


def _pt(x):
    return f"{100 * x:+.2f}"


def markdown(summary, references, measures):
    """The table of `paired_rows`: mean top-1 and std, then per reference the paired difference in
    points with its 95 % interval and wins/ties/losses."""
    head, rule = "| config | measure | n | top-1 % mean | std |", "|---|---|---|---|---|"
    for ref in references:
        head += f" vs {ref}: mean pt [95 % CI] | W/T/L |"
        rule += "---|---|"
    lines = [head, rule]
    for r in summary["rows"]:
        if r["measure"] not in measures:
            continue
        if not r["n"]:
            lines.append(f"| {r['config']} | {r['measure']} | 0 | - | - |" + " - | - |" * len(references))
            continue
        line = f"| {r['config']} | {r['measure']} | {r['n']} | {100 * r['mean']:.2f} | {100 * r['std']:.2f} |"
        for ref in references:
            d = r.get(f"vs_{ref}")
            if not d:
                line += " - | - |"
                continue
            ci = f" [{_pt(d['ci95'][0])}, {_pt(d['ci95'][1])}]" if d["ci95"] else ""
            line += f" {_pt(d['mean'])}{ci} | {d['wins']}/{d['ties']}/{d['losses']} |"
        lines.append(line)
    return "\n".join(lines)


def gap_fraction(method, low, high, resamples=10000, seed=0):
    """How much of the gap from `low` to `high` `method` closes, per seed lists (None dropped):
    mean(method - low) / mean(high - low), with a 95 % percentile bootstrap interval over seeds."""
    import numpy as np

    rows = np.array([(m, lo, hi) for m, lo, hi in zip(method, low, high) if None not in (m, lo, hi)], float)
    if len(rows) < 2:
        return None

    def fraction(r):
        gap = np.mean(r[:, 2] - r[:, 1])
        return float(np.mean(r[:, 0] - r[:, 1]) / gap) if gap else float("nan")

    rng = np.random.default_rng(seed)
    draws = [fraction(rows[rng.integers(0, len(rows), len(rows))]) for _ in range(resamples)]
    return {"n": len(rows), "fraction": fraction(rows), "ci95": [float(np.nanpercentile(draws, 2.5)),
                                                                 float(np.nanpercentile(draws, 97.5))]}


def choose(validation):
    """The rule both accuracy benchmarks choose a recipe by: the highest mean validation top-1 over the
    seeds every candidate has ({candidate: {seed: value}}, the incumbent first, which keeps a tie).
    A candidate without any value has not run and is left out. Returns (choice, seeds, {candidate:
    mean}); (None, [], {}) while no seed is common."""
    validation = {c: v for c, v in validation.items() if v}
    seeds = sorted(set.intersection(*(set(v) for v in validation.values()))) if validation else []
    if not seeds:
        return None, [], {}
    means = {c: statistics.fmean(v[s] for s in seeds) for c, v in validation.items()}
    return max(means, key=lambda c: (means[c], c == next(iter(means)))), seeds, means


def choice_text(validation):
    """One line: the choice by `choose` and every candidate's mean."""
    chosen, seeds, means = choose(validation)
    if chosen is None:
        return "choice on validation: no seed common to every candidate yet"
    return (f"choice on validation ({len(seeds)} common seeds): {chosen} ("
            + ", ".join(f"{c} {100 * m:.2f}" for c, m in means.items()) + ")")


def gap_text(gap):
    """A `gap_fraction` as the tables show it: "62 % [41, 80]" ("-" for None)."""
    if gap is None:
        return "-"
    return f"{100 * gap['fraction']:.0f} % [{100 * gap['ci95'][0]:.0f}, {100 * gap['ci95'][1]:.0f}]"


def forest(panels, path, measures=("stripped", "int8"), skip=lambda config, measure: False):
    """Writes a figure of `paired_rows` summaries to `path`: per (title, summary, configs, ref) panel, each
    configuration's mean top-1 with its 95 % interval and its paired difference to `ref`, in points, a
    marker per measure (none where `skip(config, measure)`)."""
    import common

    plt = common.pyplot()
    heights = [len(configs) for _, _, configs, _ in panels]
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 0.42 * sum(heights) + 2.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for (title, summary, configs, ref), row in zip(panels, axes):
        n = {r["config"]: r["n"] for r in summary["rows"] if r["measure"] == measures[-1]}
        for ax, field in zip(row, ("acc", f"vs_{ref}")):
            for k, measure in enumerate(measures):
                points = []  # (y, mean, interval)
                for c, config in enumerate(configs):
                    found = next(r for r in summary["rows"] if r["config"] == config and r["measure"] == measure)
                    stat = found if field == "acc" else (found.get(field) or {})
                    if stat.get("mean") is not None and not skip(config, measure):
                        points.append((c + (k - 0.5) * 0.3, stat["mean"], stat.get("ci95") or [stat["mean"]] * 2))
                if points:
                    ax.errorbar([100 * m for _, m, _ in points], [y for y, _, _ in points],
                                xerr=[[100 * (m - ci[0]) for _, m, ci in points],
                                      [100 * (ci[1] - m) for _, m, ci in points]],
                                fmt="o" if measure == "int8" else "s", ms=4, capsize=3, label=measure)
            ax.set_yticks(range(len(configs)))
            ax.set_yticklabels([f"{c} (n={n[c]})" for c in configs], fontsize=8)
            ax.invert_yaxis()
            ax.grid(alpha=0.3)
            if field == "acc":
                ax.set_xlabel("test top-1 % (mean, 95 % t interval)")
            else:
                ax.axvline(0, color="black", lw=0.8)
                ax.set_xlabel(f"paired difference vs {ref}, points (95 % t interval)")
            ax.set_title(title, fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    common.save_figure(fig, path)
