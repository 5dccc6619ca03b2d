"""k-means and random projection in pure Python, on bounded inputs (the callers cap rows x dimensions)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from operator import mul


def dot(a: list[float], b: list[float]) -> float:
    total: float = sum(map(mul, a, b))
    return total


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(dot(v, v))
    return [x / n for x in v] if n else v


@dataclass
class KMeansResult:
    centroids: list[list[float]]
    sizes: list[int]
    inertia: float  # sum of squared distances to the nearest centroid
    iterations: int
    converged: bool


def _nearest(v: list[float], vv: float, centroids: list[list[float]], cc: list[float]) -> tuple[int, float]:
    """Index of the nearest centroid and the squared distance, as |v|² + |c|² - 2 v·c."""
    best, best_d = 0, math.inf
    for j, c in enumerate(centroids):
        d = vv + cc[j] - 2 * dot(v, c)
        if d < best_d:
            best, best_d = j, d
    return best, max(best_d, 0.0)


def kmeans(data: list[list[float]], k: int, *, iterations: int, seed: int, tolerance: float = 1e-6) -> KMeansResult:
    """Lloyd's algorithm from a k-means++ start; deterministic for a given seed and input order."""
    rng = random.Random(seed)
    norms = [dot(v, v) for v in data]
    centroids = [list(data[rng.randrange(len(data))])]
    d2 = [max(norms[i] + dot(centroids[0], centroids[0]) - 2 * dot(v, centroids[0]), 0.0) for i, v in enumerate(data)]
    while len(centroids) < k:
        total = math.fsum(d2)
        if total == 0:  # fewer distinct points than k
            break
        r, acc, pick = rng.random() * total, 0.0, len(data) - 1
        for i, d in enumerate(d2):
            acc += d
            if acc >= r:
                pick = i
                break
        c = list(data[pick])
        centroids.append(c)
        cn = dot(c, c)
        d2 = [min(d2[i], max(norms[i] + cn - 2 * dot(v, c), 0.0)) for i, v in enumerate(data)]
    dims = len(data[0])
    labels = [0] * len(data)
    inertia, done, it = 0.0, False, 0
    for it in range(1, iterations + 1):  # noqa: B007 - the count is reported
        cc = [dot(c, c) for c in centroids]
        inertia = 0.0
        for i, v in enumerate(data):
            labels[i], d = _nearest(v, norms[i], centroids, cc)
            inertia += d
        sums = [[0.0] * dims for _ in centroids]
        counts = [0] * len(centroids)
        for label, v in zip(labels, data, strict=True):
            s = sums[label]
            for j, x in enumerate(v):
                s[j] += x
            counts[label] += 1
        moved = 0.0
        for j, (s, n) in enumerate(zip(sums, counts, strict=True)):
            if n:
                new = [x / n for x in s]
                moved = max(moved, sum((a - b) ** 2 for a, b in zip(new, centroids[j], strict=True)))
                centroids[j] = new
        if moved <= tolerance:
            done = True
            break
    sizes = [labels.count(j) for j in range(len(centroids))]
    return KMeansResult(centroids, sizes, inertia, it, done)


def projection(dims: int, target: int, seed: int) -> list[list[float]]:
    """A sparse random projection (Achlioptas): entries ±sqrt(3/target) with probability 1/6 each, else 0.

    Distances are preserved in expectation (Johnson-Lindenstrauss); returned as target rows of `dims` weights.
    """
    rng = random.Random(seed)
    scale = math.sqrt(3.0 / target)
    rows = []
    for _ in range(target):
        row = []
        for _ in range(dims):
            r = rng.random()
            row.append(scale if r < 1 / 6 else -scale if r < 1 / 3 else 0.0)
        rows.append(row)
    return rows


def project(v: list[float], matrix: list[list[float]]) -> list[float]:
    return [dot(row, v) for row in matrix]
