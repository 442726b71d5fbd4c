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
