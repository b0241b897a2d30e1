"""PyTorch peer of `snarm bench layers`: the decoder head's dilated conv3x3
(128 -> 128 channels, 32 maps of 49 x 49, padding = dilation), forward and
backward, for each dilation given.

Runs PyTorch at its best on this machine: 2 threads, OMP_WAIT_POLICY=PASSIVE
(set before torch is imported). Prints one line per dilation and finally
"TIME <seconds>" (forward + backward summed over the dilations, best rep).

usage: bench_layers.py [--maps 32] [--dils 3,24] [--reps 2]
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print("torch unavailable: %s" % e)
    sys.exit(77)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maps", type=int, default=32)
    ap.add_argument("--dils", default="3,24")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    total = 0.0
    for dil in (int(d) for d in a.dils.split(",")):
        x = torch.randn(a.maps, 128, 49, 49, requires_grad=True)
        w = (torch.randn(128, 128, 3, 3) * 0.05).requires_grad_(True)
        b = torch.zeros(128, requires_grad=True)
        best = 1e30
        for _ in range(a.reps):
            t0 = time.perf_counter()
            y = F.conv2d(x, w, b, padding=dil, dilation=dil)
            y.backward(y.detach())
            best = min(best, time.perf_counter() - t0)
        print(f"torch conv3x3 dil {dil}: {best * 1e3:.0f} ms forward+backward")
        total += best
    print(f"TIME {total:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
