"""PyTorch peer of `snarm bench knn`: exact top-k by torch.cdist + topk.

A Gaussian bank (NB x D) and NQ queries; each repetition is one image's
search: the full distance matrix with torch.cdist (the matrix-product path
that cdist takes at these sizes), then topk(k, largest=False). 2 threads,
OMP_WAIT_POLICY=PASSIVE (set before torch is imported). Prints
"TIME <seconds>": the best of the repetitions after one warm-up.

usage: bench_knn.py NB D NQ K REPS
"""
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
except ImportError as e:
    print("torch unavailable: %s" % e)
    sys.exit(77)


def main():
    nb, d, nq, k, reps = (int(a) for a in sys.argv[1:6])
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(1)
    bank = torch.randn(nb, d, generator=g)
    q = torch.randn(nq, d, generator=g)
    times = []
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        dist = torch.cdist(q, bank)
        val, idx = dist.topk(k, dim=1, largest=False)
        t = time.perf_counter() - t0
        del dist
        if rep:
            times.append(t)
    print(f"TIME {min(times):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
