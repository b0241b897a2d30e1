"""PyTorch peer of `snarm bench vit`: DINOv2 ViT-B/14 with 4 registers at
392 x 392, random weights, patch embedding plus blocks 0..8, batches 1 and 4.

Runs PyTorch at its best on this machine: 2 threads, OMP_WAIT_POLICY=PASSIVE
(set before torch is imported), inference mode. Prints one line per batch
size and finally "TIME <seconds per image>" (the better batch size).

usage: bench_vit.py [--size 392] [--blocks 9] [--reps 2]
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print("torch unavailable: %s" % e)
    sys.exit(77)

DIM, HEADS, MLP, PATCH, GRID, REG = 768, 12, 3072, 14, 37, 4


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM, eps=1e-6), nn.LayerNorm(DIM, eps=1e-6)
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)
        self.fc1, self.fc2 = nn.Linear(DIM, MLP), nn.Linear(MLP, DIM)
        self.ls1 = nn.Parameter(torch.full((DIM,), 1e-1))
        self.ls2 = nn.Parameter(torch.full((DIM,), 1e-1))

    def forward(self, x):
        n, t, _ = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, HEADS, DIM // HEADS)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) * (DIM // HEADS) ** -0.5, dim=-1)
        a = (att @ v).transpose(1, 2).reshape(n, t, DIM)
        x = x + self.ls1 * self.proj(a)
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.patch = nn.Conv2d(3, DIM, PATCH, PATCH)
        self.cls = nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.reg = nn.Parameter(torch.randn(1, REG, DIM) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, GRID * GRID + 1, DIM) * 0.02)
        self.blocks = nn.ModuleList(Block() for _ in range(blocks))

    def embed(self, x):
        n = x.shape[0]
        tok = self.patch(x).flatten(2).transpose(1, 2)
        g = int(tok.shape[1] ** 0.5)
        pos = self.pos[:, 1:].reshape(1, GRID, GRID, DIM).permute(0, 3, 1, 2)
        sf = (g + 0.1) / GRID
        pos = F.interpolate(pos, scale_factor=(sf, sf), mode="bicubic", align_corners=False)
        pos = pos.permute(0, 2, 3, 1).reshape(1, g * g, DIM)
        tok = torch.cat([self.cls.expand(n, -1, -1) + self.pos[:, :1], tok + pos], dim=1)
        return torch.cat([tok[:, :1], self.reg.expand(n, -1, -1), tok[:, 1:]], dim=1)

    def forward(self, x):
        x = self.embed(x)
        for b in self.blocks:
            x = b(x)
        return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=392)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = ViT(a.blocks).eval()
    best = float("inf")
    with torch.inference_mode():
        for batch in (1, 4):
            x = torch.randn(batch, 3, a.size, a.size)
            model(x)  # warm-up
            times = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
            per = min(times) / batch  # best run: other jobs share the cores
            print("torch batch %d: %.1f ms per image" % (batch, per * 1e3), flush=True)
            best = min(best, per)
    print("TIME %.6f" % best)


if __name__ == "__main__":
    main()
