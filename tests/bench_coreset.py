"""PyTorch peers of `snarm bench coreset`: greedy k-centre selection.

Reads the features the bench wrote (X: N x D float32, raw), its projection
(P: PD x D float32, raw) and start point, projects with one matrix product
and runs one of two loops for T points, timing projection and loop:
  patchcore  the loop as PatchCore publishes it: distances by the matrix
             form |a|^2 - 2ab + |b|^2 (clamped, square-rooted), the running
             minimum kept by concatenating the new column and taking the min
             over both; the start point is an anchor, T - 1 points follow it
  torch      a tight loop: squared norms once, one matrix-vector product and
             an in-place minimum per step, argmax
  float64    the tight loop in double precision on the same float32
             projection: the arbiter when the float32 loops disagree (their
             matrix form loses digits to cancellation)
Both take the first index on ties (torch.argmax). Writes the selection
(int64, start point first) to OUT and prints "TIME <seconds>".

usage: bench_coreset.py MODE X N D P PD START T OUT
"""
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import numpy as np
    import torch
except ImportError as e:
    print("torch unavailable: %s" % e)
    sys.exit(77)


def pairwise(a, b):
    a2 = (a * a).sum(1, keepdim=True)
    b2 = (b * b).sum(1).unsqueeze(0)
    return (a2 - 2.0 * a @ b.T + b2).clamp(min=0).sqrt()


def patchcore_loop(z, start, T):
    mind = pairwise(z, z[start:start + 1])
    sel = [start]
    for _ in range(T - 1):
        c = int(torch.argmax(mind))
        sel.append(c)
        col = pairwise(z, z[c:c + 1])
        mind = torch.cat([mind, col], dim=1)
        mind = torch.min(mind, dim=1).values.reshape(-1, 1)
    return sel


def tight_loop(z, start, T):
    z2 = (z * z).sum(1)
    mind = torch.full((z.shape[0],), float("inf"), dtype=z.dtype)
    sel = [start]
    c = start
    for _ in range(T - 1):
        d = z2 - 2.0 * torch.mv(z, z[c]) + z2[c]
        torch.minimum(mind, d, out=mind)
        c = int(torch.argmax(mind))
        sel.append(c)
    return sel


def main():
    mode, xpath = sys.argv[1], sys.argv[2]
    n, d = int(sys.argv[3]), int(sys.argv[4])
    ppath, pd = sys.argv[5], int(sys.argv[6])
    start, T, out = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
    torch.set_num_threads(2)
    x = torch.from_numpy(np.fromfile(xpath, np.float32).reshape(n, d))
    p = torch.from_numpy(np.fromfile(ppath, np.float32).reshape(pd, d))
    loop = patchcore_loop if mode == "patchcore" else tight_loop
    with torch.no_grad():
        t0 = time.perf_counter()
        z = x @ p.T
        if mode == "float64":
            z = z.double()
        sel = loop(z, start, T)
        t = time.perf_counter() - t0
    np.asarray(sel, np.int64).tofile(out)
    print(f"TIME {t:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
