#!/usr/bin/env python3
"""bench_train.py - the PyTorch peer of `snarm bench train`.

Times one training step of the reference decoder (tests/ref_decoder.py) at
the given sizes: feature jitter, waypoint map, self references, intra
matching (torch.cdist), the navigator and the active branch forward, both
focal losses, backward, AdamW. One warm-up step, then one timed step per
branch (the branch cycle visits them all); prints "TIME <seconds>", the mean
step time, as its last line. Exits 77 when torch is missing.

Usage: bench_train.py [--batch 8] [--grid 49] [--dim 512] [--embed 128]
                      [--out 392] [--threads 2] [--branches 4]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_decoder as rd  # noqa: E402 (exits 77 without torch)

torch = rd.torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--grid", type=int, default=49)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--out", type=int, default=392)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--branches", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    D = rd.Dims(grid=a.grid, d=a.dim, e=a.embed, out=a.out)
    P = {k: v.float().requires_grad_(True) for k, v in rd.init_params(D, gen).items()}
    Bf = {k: v.float() for k, v in rd.init_buffers(D, gen).items()}
    f = torch.randn(a.batch, D.M, D.d, generator=gen)
    R = 0.3 * torch.rand(a.batch, D.M, D.d, generator=gen)
    mask = torch.zeros(a.batch, D.out, D.out)
    mask[:, D.out // 4:D.out // 2, D.out // 3:D.out // 2] = 1
    opt = torch.optim.AdamW(list(P.values()), lr=1e-3, weight_decay=0.05)

    def step(b):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        fj, Rj = rd.jitter(f, R, 30.0)
        out = rd.decoder_forward(P, Bf, fj, Rj, D, True, [b], fast=True)
        ln, lh = rd.decoder_loss(out, mask, D, b)
        (ln + lh).backward()
        opt.step()
        return time.perf_counter() - t0

    step(0)  # warm-up
    times = []
    for b in range(min(a.branches, len(D.dil))):
        t = step(b)
        print("torch step, branch %d (dilation %d): %.1f ms" % (b, D.dil[b], 1e3 * t))
        times.append(t)
    print("TIME %.6f" % (sum(times) / len(times)))


if __name__ == "__main__":
    main()
