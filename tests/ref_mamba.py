#!/usr/bin/python3
"""PyTorch reference of the Mamba mixer (SPEC section 2, step 11).

A faithful copy of mamba_simple's computation (in_proj, causal depthwise
conv1d, SiLU, x_proj, dt_proj with softplus, selective scan, gate by
SiLU(z), out_proj) with a plain sequential selective scan in fp32.
Writes, for two cases, the parameters, the packed input, the output, the
upstream gradient dy of a random linear loss sum(y * dy), and the gradients
of the input and of every parameter into an HDF5 file (h5py):

  case "eq":  B = 2 sequences of length 13 (e = 16)
  case "var": lengths 40, 5, 0, 1, 70 packed (e = 16); the longer ones
              cross the C code's state checkpoints (every 32 tokens)

Usage: ref_mamba.py OUT.h5
"""
import math
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)
import h5py
import numpy as np


class MambaMixer(nn.Module):
    """mamba_simple.Mamba's parameters and initialisation, reference path."""

    def __init__(self, e, n=4, k=4, expand=2):
        super().__init__()
        E, r = expand * e, math.ceil(e / 16)
        self.e, self.E, self.n, self.k, self.r = e, E, n, k, r
        self.in_proj = nn.Linear(e, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, k, groups=E, padding=k - 1, bias=True)
        self.x_proj = nn.Linear(E, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, E, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -r ** -0.5, r ** -0.5)
        dt = torch.exp(torch.rand(E) * (math.log(1e-1) - math.log(1e-3))
                       + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, n + 1, dtype=torch.float32).repeat(E, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, e, bias=False)

    def forward(self, tok):
        """tok: (L, e) one sequence -> (L, e)."""
        L = tok.shape[0]
        if L == 0:  # an image whose every cell is a self reference
            return tok.new_zeros(0, self.e)
        xz = self.in_proj(tok)
        x, z = xz[:, :self.E], xz[:, self.E:]
        xc = self.conv1d(x.t().unsqueeze(0))[0, :, :L].t()
        u = F.silu(xc)
        dbc = self.x_proj(u)
        dt_raw = dbc[:, :self.r]
        Bm = dbc[:, self.r:self.r + self.n]
        Cm = dbc[:, self.r + self.n:]
        delta = F.softplus(self.dt_proj(dt_raw))
        A = -torch.exp(self.A_log)
        h = torch.zeros(self.E, self.n)
        ys = []
        for t in range(L):
            h = torch.exp(delta[t, :, None] * A) * h \
                + delta[t, :, None] * Bm[t][None, :] * u[t, :, None]
            ys.append(h @ Cm[t] + self.D * u[t])
        y = torch.stack(ys)
        return self.out_proj(y * F.silu(z))


PARAMS = [("in_w", "in_proj.weight"), ("conv_w", "conv1d.weight"),
          ("conv_b", "conv1d.bias"), ("xproj_w", "x_proj.weight"),
          ("dt_w", "dt_proj.weight"), ("dt_b", "dt_proj.bias"),
          ("A_log", "A_log"), ("D", "D"), ("out_w", "out_proj.weight")]


def write_case(f, name, e, lengths, seed):
    torch.manual_seed(seed)
    m = MambaMixer(e)
    # Move A_log and D off their structured initial values, and raise some
    # dt (as training does) so that the state carries over many tokens and
    # every gradient term is exercised generically.
    with torch.no_grad():
        m.A_log.add_(0.3 * torch.randn_like(m.A_log))
        m.D.add_(0.5 * torch.randn_like(m.D))
        m.dt_proj.bias.add_(4.0 * torch.rand_like(m.dt_proj.bias))
    T = sum(lengths)
    x = torch.randn(T, e, requires_grad=True)
    outs, start = [], 0
    for L in lengths:
        outs.append(m(x[start:start + L]))
        start += L
    y = torch.cat(outs)
    dy = torch.randn(T, e)
    (y * dy).sum().backward()

    g = f.create_group(name)
    g["dims"] = np.array([e, m.E, m.n, m.k, m.r], dtype=np.float32)
    g["len"] = np.array(lengths, dtype=np.float32)
    g["x"] = x.detach().numpy()
    g["y"] = y.detach().numpy()
    g["dy"] = dy.numpy()
    g["dx"] = x.grad.numpy()
    params = dict(m.named_parameters())
    for cname, tname in PARAMS:
        prm = params[tname]
        g[cname] = prm.detach().reshape(-1).numpy()
        g["g_" + cname] = prm.grad.reshape(-1).numpy()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    torch.set_num_threads(1)
    with h5py.File(sys.argv[1], "w") as f:
        write_case(f, "eq", 16, [13, 13], 5)
        write_case(f, "var", 16, [40, 5, 0, 1, 70], 6)


if __name__ == "__main__":
    main()
