"""Statistics over seeds shared by the accuracy benchmarks: a mean with its 95 % t interval, and
paired differences (same seed = same initial weights and batches, so the seed's luck cancels)."""
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
