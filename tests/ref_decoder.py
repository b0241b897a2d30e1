#!/usr/bin/env python3
"""ref_decoder.py - a PyTorch model of SNARM's decoder and its training step.

The model of SPEC section 2 (steps 7-13) and section 4, written plainly so
that the C decoder (core/decoder.c, core/train.c) can be checked against it:

  navigator      Q = sigmoid(conv1x1(R)), Q* = Q + mean_c R
  self refs      S = the round(M p / 100) cells of lowest Q* (ties: lower index)
  intra match    Rt_i = pool(f_j(i) - f_i), j(i) = nearest cell of S, j != i
  hybrid         H = concat(R, Rt)  (matching.hybrid = 0: H = R, d channels)
  branch b       embed conv1x1 -> e; four scans stacked as one batch; per SMB
                 r = h + r (r = h for the first block), x = RMSNorm(r),
                 c = conv3x3(x laid out as a grid in scan order),
                 h = c, with the cells outside S replaced by mixer(c[not S])
                 taken in scan order; then o = LayerNorm(dropout(h) + r),
                 un-permuted back to row-major order
  heads (b, s)   conv3x3 dilation r_b, BatchNorm, ReLU, conv1x1 -> 1,
                 bilinear up-sampling (align_corners), sigmoid
  loss           focal(Up(Q), Y; 0.5, 4) + mean_s focal(m^(b,s), Y; 0.25, 4),
                 Up(Q) up-samples the probabilities (the sigmoid comes first,
                 as Eq. 12 writes it), both focal losses average over pixels
  optimiser      torch.optim.AdamW; the inactive branches get no gradient
                 (grad None) and are skipped, so each branch keeps its own
                 step count

The Mamba mixer is mamba_simple's, with its selective scan written as a plain
loop over time. Parameter names and layouts are the ones the C decoder uses
in its checkpoints (PyTorch layouts: conv1x1 [out][in], conv3x3
[out][in][3][3], the depthwise conv1d [E][k]).

Usage:
  ref_decoder.py OUT.h5        write the golden file of the C tests
  (tests/bench_train.py imports this module as the benchmark peer)
Exits 77 when torch or h5py is missing.
"""
import math
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("ref_decoder.py: torch/numpy not available, skipping")
    sys.exit(77)

NORM_EPS = 1e-5
BN_MOMENTUM = 0.1
FOCAL_PROB_EPS = 1e-6


class Dims:
    """Sizes and switches of the decoder (the C struct decoder_dims)."""

    def __init__(self, grid=49, d=512, e=128, d_state=4, d_conv=4, expand=2,
                 blocks=2, scans=4, dilations=(3, 6, 12, 24), out=392,
                 p_percent=75.0, hybrid=True, navigate=True, pow2=True,
                 dropout=0.1):
        self.grid, self.M, self.d, self.e = grid, grid * grid, d, e
        self.E, self.n, self.k = expand * e, d_state, d_conv
        self.r = (e + 15) // 16
        self.blocks, self.scans = blocks, scans
        self.dil = list(dilations)
        self.out, self.p = out, p_percent
        self.hybrid, self.navigate, self.pow2 = hybrid, navigate, pow2
        self.dropout = dropout
        self.in_ch = 2 * d if hybrid else d
        # round half up, as the C residual_self_ref_count
        self.nS = int(math.floor(self.M * p_percent / 100.0 + 0.5))


# ---------------------------------------------------------------------------
# Parameters


def mixer_specs(pre, D):
    return [(pre + "in_w", (2 * D.E, D.e)), (pre + "conv_w", (D.E, D.k)),
            (pre + "conv_b", (D.E,)), (pre + "xproj_w", (D.r + 2 * D.n, D.E)),
            (pre + "dt_w", (D.E, D.r)), (pre + "dt_b", (D.E,)),
            (pre + "A_log", (D.E, D.n)), (pre + "D", (D.E,)),
            (pre + "out_w", (D.e, D.E))]


def branch_specs(b, D):
    p = "b%d." % b
    s = [(p + "embed.w", (D.e, D.in_ch)), (p + "embed.b", (D.e,))]
    for k in range(D.blocks):
        q = p + "smb%d." % k
        s += [(q + "norm.w", (D.e,)), (q + "conv.w", (D.e, D.e, 3, 3)),
              (q + "conv.b", (D.e,))]
        s += mixer_specs(q + "mixer.", D)
    s += [(p + "ln.w", (D.e,)), (p + "ln.b", (D.e,))]
    for h in range(D.scans):
        q = p + "head%d." % h
        s += [(q + "conv.w", (D.e, D.e, 3, 3)), (q + "conv.b", (D.e,)),
              (q + "bn.w", (D.e,)), (q + "bn.b", (D.e,)),
              (q + "out.w", (1, D.e)), (q + "out.b", (1,))]
    return s


def param_specs(D):
    """(name, shape) of every parameter, in the C decoder's flat order."""
    s = [("nav.w", (1, D.d)), ("nav.b", (1,))]
    for b in range(len(D.dil)):
        s += branch_specs(b, D)
    return s


def buffer_specs(D):
    s = []
    for b in range(len(D.dil)):
        for h in range(D.scans):
            q = "b%d.head%d.bn." % (b, h)
            s += [(q + "mean", (D.e,)), (q + "var", (D.e,))]
    return s


def uniform(gen, shape, bound):
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound


def init_params(D, gen, perturb=False):
    """PyTorch-default initialisation (fan-in uniform; Mamba's dt, A, D).
    perturb moves norm weights, biases and BN affines off 1/0 so that a
    golden test sees every term."""
    P = {}
    for name, shape in param_specs(D):
        leaf = name.split(".")[-1]
        if name.endswith("norm.w") or name.endswith("ln.w") or name.endswith("bn.w"):
            t = torch.ones(shape, dtype=torch.float64)
            if perturb:
                t += 0.2 * uniform(gen, shape, 1.0)
        elif name.endswith("ln.b") or name.endswith("bn.b"):
            t = 0.1 * uniform(gen, shape, 1.0) if perturb else \
                torch.zeros(shape, dtype=torch.float64)
        elif leaf == "A_log":
            t = torch.log(torch.arange(1, D.n + 1, dtype=torch.float64)).repeat(D.E, 1)
            if perturb:
                t += 0.1 * uniform(gen, shape, 1.0)
        elif leaf == "D":
            t = torch.ones(shape, dtype=torch.float64)
            if perturb:
                t += 0.2 * uniform(gen, shape, 1.0)
        elif leaf == "dt_w":
            t = uniform(gen, shape, D.r ** -0.5)
        elif leaf == "dt_b":
            lo, hi = (0.05, 0.5) if perturb else (1e-3, 1e-1)
            dt = torch.exp(torch.rand(shape, generator=gen, dtype=torch.float64)
                           * (math.log(hi) - math.log(lo)) + math.log(lo))
            dt = dt.clamp(min=1e-4)
            t = dt + torch.log(-torch.expm1(-dt))
        else:
            fan_in = {"conv_w": D.k, "conv_b": D.k}.get(leaf)
            if fan_in is None:
                if len(shape) == 1:  # biases: fan-in of their weight
                    wname = name[:-1] + "w"
                    wshape = dict(param_specs(D))[wname]
                    fan_in = int(np.prod(wshape[1:]))
                else:
                    fan_in = int(np.prod(shape[1:]))
            t = uniform(gen, shape, 1.0 / math.sqrt(fan_in))
        P[name] = t
    return P


def init_buffers(D, gen, perturb=False):
    B = {}
    for name, shape in buffer_specs(D):
        if name.endswith("mean"):
            B[name] = 0.1 * uniform(gen, shape, 1.0) if perturb else \
                torch.zeros(shape, dtype=torch.float64)
        else:
            B[name] = 1.0 + 0.5 * uniform(gen, shape, 1.0) if perturb else \
                torch.ones(shape, dtype=torch.float64)
    return B


# ---------------------------------------------------------------------------
# Matching: waypoint map, self references, intra residual


def scan_perms(G, scans):
    """perm[s][t]: the row-major cell visited at step t of scan s."""
    row = torch.arange(G * G)
    col = torch.arange(G * G).reshape(G, G).t().reshape(-1)
    return [row, col, row.flip(0), col.flip(0)][:scans]


def pool_form(u, pow2):
    """pool_d(concat(|u|, u^2)): channel c averages inputs 2c and 2c+1."""
    if not pow2:
        return u.abs()
    a = torch.cat([u.abs(), u * u], -1)
    return 0.5 * (a[..., 0::2] + a[..., 1::2])


def self_ref(qstar, nS):
    """Indices (ascending) of the nS lowest entries of one image's Q*."""
    order = np.argsort(qstar.detach().cpu().numpy(), kind="stable")
    return torch.tensor(np.sort(order[:nS]), dtype=torch.long)


def intra_residual(f, S, pow2, fast=False):
    """Rt (M x d) of one image and the matched cell of every cell."""
    fS = f[S]
    if fast:
        d2 = torch.cdist(f, fS)
    else:
        d2 = ((f[:, None, :] - fS[None, :, :]) ** 2).sum(-1)
    d2[S, torch.arange(len(S))] = float("inf")  # a trusted cell never matches itself
    j = S[d2.argmin(1)]
    return pool_form(f[j] - f, pow2), j, d2


# ---------------------------------------------------------------------------
# The Mamba mixer with a sequential selective scan


def selective_scan(u, delta, A, Bm, Cm, Dv):
    """u, delta: (b, L, E); A: (E, n); Bm, Cm: (b, L, n). A plain loop over
    time; the inputs are unbound into per-step views once, so that autograd
    stacks their gradients once instead of scattering every step's slice
    into a zero tensor of the full size."""
    b, L, E = u.shape
    h = torch.zeros(b, E, A.shape[1], dtype=u.dtype)
    ys = []
    for u_t, d_t, B_t, C_t in zip(u.unbind(1), delta.unbind(1), Bm.unbind(1),
                                  Cm.unbind(1)):
        dt = d_t.unsqueeze(-1)
        h = torch.exp(dt * A) * h + dt * B_t.unsqueeze(1) * u_t.unsqueeze(-1)
        ys.append((h * C_t.unsqueeze(1)).sum(-1))
    return torch.stack(ys, 1) + u * Dv


def mixer(P, pre, x, D):
    L = x.shape[1]
    xz = x @ P[pre + "in_w"].t()
    xs, z = xz[..., :D.E], xz[..., D.E:]
    xc = F.conv1d(xs.transpose(1, 2), P[pre + "conv_w"].unsqueeze(1), P[pre + "conv_b"],
                  padding=D.k - 1, groups=D.E)[..., :L]
    u = F.silu(xc).transpose(1, 2)
    xdbl = u @ P[pre + "xproj_w"].t()
    dtr, Bm, Cm = xdbl[..., :D.r], xdbl[..., D.r:D.r + D.n], xdbl[..., D.r + D.n:]
    delta = F.softplus(dtr @ P[pre + "dt_w"].t() + P[pre + "dt_b"])
    A = -torch.exp(P[pre + "A_log"])
    y = selective_scan(u, delta, A, Bm, Cm, P[pre + "D"])
    return (y * F.silu(z)) @ P[pre + "out_w"].t()


# ---------------------------------------------------------------------------
# One branch: embedding, scans, SMBs, LayerNorm; then its heads


def rmsnorm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + NORM_EPS) * w


def smb(P, pre, r, sel, D):
    """One self-navigated Mamba block on the normed residual stream r
    (nb, M, e) in scan order; sel (nb, L') the visited positions."""
    nb, M, e = r.shape
    G = D.grid
    x = rmsnorm(r, P[pre + "norm.w"])
    xm = x.transpose(1, 2).reshape(nb, e, G, G)  # position t -> (t // G, t % G)
    c = F.conv2d(xm, P[pre + "conv.w"], P[pre + "conv.b"], padding=1)
    c = c.reshape(nb, e, M).transpose(1, 2)
    idx = sel.unsqueeze(-1).expand(-1, -1, e)
    y = mixer(P, pre + "mixer.", c.gather(1, idx), D)
    return c.scatter(1, idx, y)


def visited_positions(S_list, perms, D):
    """(scans * B, L'): positions t of each scan whose cell is outside S
    (every position when navigation is off), scan-major like the stack."""
    rows = []
    for perm in perms:
        for S in S_list:
            if D.navigate:
                inS = torch.zeros(D.M, dtype=torch.bool)
                inS[S] = True
                rows.append(torch.nonzero(~inS[perm]).squeeze(1))
            else:
                rows.append(torch.arange(D.M))
    return torch.stack(rows, 0)


def branch_forward(P, b, H, S_list, D, train):
    """The SNMM of branch b: returns o (scans, B, M, e) in row-major order."""
    B = H.shape[0]
    pre = "b%d." % b
    perms = scan_perms(D.grid, D.scans)
    emb = H @ P[pre + "embed.w"].t() + P[pre + "embed.b"]
    h = torch.cat([emb[:, perm] for perm in perms], 0)  # scan-major stack
    sel = visited_positions(S_list, perms, D)
    r = None
    for k in range(D.blocks):
        r = h if r is None else h + r
        h = smb(P, pre + "smb%d." % k, r, sel, D)
    h = F.dropout(h, D.dropout, training=train)
    o = F.layer_norm(h + r, (D.e,), P[pre + "ln.w"], P[pre + "ln.b"], NORM_EPS)
    o = o.reshape(D.scans, B, D.M, D.e)
    return torch.stack([o[s][:, torch.argsort(perms[s])] for s in range(D.scans)], 0)


def head_forward(P, Bf, b, s, o, D, train):
    """Head (b, s) on o (B, M, e): returns the up-sampled logits (B, out, out)."""
    B = o.shape[0]
    pre = "b%d.head%d." % (b, s)
    r = D.dil[b]
    x = o.transpose(1, 2).reshape(B, D.e, D.grid, D.grid)
    a = F.conv2d(x, P[pre + "conv.w"], P[pre + "conv.b"], padding=r, dilation=r)
    a = F.batch_norm(a, Bf[pre + "bn.mean"], Bf[pre + "bn.var"], P[pre + "bn.w"],
                     P[pre + "bn.b"], training=train, momentum=BN_MOMENTUM, eps=NORM_EPS)
    a = F.relu(a)
    logit = F.conv2d(a, P[pre + "out.w"].reshape(1, D.e, 1, 1), P[pre + "out.b"])
    up = F.interpolate(logit, size=(D.out, D.out), mode="bilinear", align_corners=True)
    return up[:, 0]


# ---------------------------------------------------------------------------
# Losses


def focal_logit(x, y, alpha, gamma):
    """torchvision's sigmoid_focal_loss, mean over pixels."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    pt = p * y + (1 - p) * (1 - y)
    at = alpha * y + (1 - alpha) * (1 - y)
    return (at * ce * (1 - pt) ** gamma).mean()


def focal_prob(p, y, alpha, gamma):
    """The same on probabilities, p_t clamped at FOCAL_PROB_EPS."""
    pos = y > 0.5
    pt = torch.where(pos, p, 1 - p).clamp(min=FOCAL_PROB_EPS)
    at = torch.where(pos, torch.full_like(p, alpha), torch.full_like(p, 1 - alpha))
    return (-at * (1 - pt) ** gamma * torch.log(pt)).mean()


# ---------------------------------------------------------------------------
# The whole decoder


def navigator(P, R, D):
    logit = R @ P["nav.w"].t() + P["nav.b"]  # (B, M, 1)
    Q = torch.sigmoid(logit[..., 0])
    return Q, Q.detach() + R.mean(-1)


def jitter(f, R, lam, gen=None):
    """Eq. 15 with one eps per cell, shared by f and R."""
    d = f.shape[-1]
    eps = torch.randn(f.shape, generator=gen, dtype=f.dtype)
    f = f + lam * f.norm(dim=-1, keepdim=True) / d * eps
    R = R + lam * R.norm(dim=-1, keepdim=True) / d * eps
    return f, R


def decoder_forward(P, Bf, f, R, D, train, branches, fast=False):
    """Returns a dict: Q, Qstar (B, M), S (list), Rt (B, M, d) or None,
    nav_up (B, out, out) probabilities, logits {(b, s): (B, out, out)}."""
    B = f.shape[0]
    Q, Qstar = navigator(P, R, D)
    S_list = [self_ref(Qstar[i], D.nS) for i in range(B)]
    Rt, nn, d2 = None, [], []
    if D.hybrid:
        outs = [intra_residual(f[i], S_list[i], D.pow2, fast) for i in range(B)]
        Rt = torch.stack([o[0] for o in outs], 0)
        nn, d2 = [o[1] for o in outs], [o[2] for o in outs]
        H = torch.cat([R, Rt], -1)
    else:
        H = R
    Qmap = Q.reshape(B, 1, D.grid, D.grid)
    nav_up = F.interpolate(Qmap, size=(D.out, D.out), mode="bilinear",
                           align_corners=True)[:, 0]
    logits = {}
    for b in branches:
        o = branch_forward(P, b, H, S_list, D, train)
        for s in range(D.scans):
            logits[(b, s)] = head_forward(P, Bf, b, s, o[s], D, train)
    return dict(Q=Q, Qstar=Qstar, S=S_list, Rt=Rt, nn=nn, d2=d2, nav_up=nav_up,
                logits=logits)


def decoder_loss(out, mask, D, b, nav_alpha=0.5, nav_gamma=4.0, head_alpha=0.25,
                 head_gamma=4.0):
    ln = focal_prob(out["nav_up"], mask, nav_alpha, nav_gamma)
    lh = sum(focal_logit(out["logits"][(b, s)], mask, head_alpha, head_gamma)
             for s in range(D.scans)) / D.scans
    return ln, lh


def branch_names(D, b):
    return [n for n, _ in branch_specs(b, D)]


def active_names(D, b):
    return ["nav.w", "nav.b"] + branch_names(D, b)


# ---------------------------------------------------------------------------
# Golden file for the C tests


def golden_dims():
    return Dims(grid=7, d=16, e=8, d_state=4, d_conv=4, expand=2, blocks=2, scans=4,
                dilations=(2, 3, 6, 24), out=21, p_percent=75.0, dropout=0.0)


def golden_inputs(D, gen, B):
    """Image features f, a non-negative inter residual R with a planted
    high-residual blob, and the blob's mask at the output size."""
    f = torch.randn(B, D.M, D.d, generator=gen, dtype=torch.float64)
    R = 0.3 * torch.rand(B, D.M, D.d, generator=gen, dtype=torch.float64)
    mask = torch.zeros(B, D.out, D.out, dtype=torch.float64)
    s = D.out // D.grid
    for i in range(B):
        y0 = int(torch.randint(0, D.grid - 2, (1,), generator=gen))
        x0 = int(torch.randint(0, D.grid - 2, (1,), generator=gen))
        for y in range(y0, y0 + 2):
            for x in range(x0, x0 + 2):
                R[i, y * D.grid + x] += 1.0
                f[i, y * D.grid + x] += 2.0
        mask[i, y0 * s:(y0 + 2) * s, x0 * s:(x0 + 2) * s] = 1
    # the C decoder reads float32: compute on the float32 values
    return f.float().double(), R.float().double(), mask


def selection_margin(out, D):
    """Smallest gap at the self-reference boundary and between the best
    and second-best intra match: a near-tie could pick differently in
    float32, so the golden seed is redrawn until both are clear."""
    gap = float("inf")
    for i in range(out["Qstar"].shape[0]):
        q = np.sort(out["Qstar"][i].detach().numpy())
        if D.nS < D.M:
            gap = min(gap, q[D.nS] - q[D.nS - 1])
        if out["d2"]:
            d2 = np.sort(out["d2"][i].detach().numpy(), 1)
            gap = min(gap, float((d2[:, 1] - d2[:, 0]).min()))
    return gap


def run_golden(seed, B=2, steps=3, cycle=2):
    D = golden_dims()
    gen = torch.Generator().manual_seed(seed)
    P = {k: v.float().double() for k, v in init_params(D, gen, perturb=True).items()}
    Bf = {k: v.float().double() for k, v in init_buffers(D, gen, perturb=True).items()}
    batches = [golden_inputs(D, gen, B) for _ in range(steps)]
    rec = {"init/params/" + k: v.clone() for k, v in P.items()}
    rec.update({"init/buffers/" + k: v.clone() for k, v in Bf.items()})
    for i, (f, R, m) in enumerate(batches):
        rec["input%d/f" % i], rec["input%d/R" % i], rec["input%d/mask" % i] = f, R, m
    margin = float("inf")

    # Eval mode: all 16 maps on the first batch.
    with torch.no_grad():
        out = decoder_forward(P, Bf, batches[0][0], batches[0][1], D, False,
                              range(len(D.dil)))
    margin = min(margin, selection_margin(out, D))
    rec["eval/Q"], rec["eval/Qstar"] = out["Q"], out["Qstar"]
    rec["eval/S"] = torch.stack(out["S"], 0).double()
    rec["eval/Rt"] = out["Rt"]
    rec["eval/maps"] = torch.stack([torch.sigmoid(out["logits"][(b, s)])
                                    for b in range(len(D.dil))
                                    for s in range(D.scans)], 1)

    # Train mode: three AdamW steps, the active branch switching after cycle.
    for name in P:
        P[name].requires_grad_(True)
    opt = torch.optim.AdamW(list(P.values()), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.05)
    for k in range(steps):
        b = (k // cycle) % len(D.dil)
        f, R, m = batches[k]
        opt.zero_grad(set_to_none=True)
        out = decoder_forward(P, Bf, f, R, D, True, [b])
        margin = min(margin, selection_margin(out, D))
        ln, lh = decoder_loss(out, m, D, b)
        (ln + lh).backward()
        pre = "step%d/" % k
        rec[pre + "branch"] = torch.tensor([float(b)])
        rec[pre + "loss_nav"], rec[pre + "loss_head"] = ln.detach(), lh.detach()
        rec[pre + "Q"], rec[pre + "Qstar"] = out["Q"].detach(), out["Qstar"].detach()
        rec[pre + "S"] = torch.stack(out["S"], 0).double()
        rec[pre + "Rt"] = out["Rt"].detach()
        rec[pre + "nav_up"] = out["nav_up"].detach()
        rec[pre + "maps"] = torch.stack([torch.sigmoid(out["logits"][(b, s)]).detach()
                                         for s in range(D.scans)], 1)
        for name in active_names(D, b):
            rec[pre + "grads/" + name] = P[name].grad.detach().clone()
        opt.step()
        for name in P:
            rec[pre + "params/" + name] = P[name].detach().clone()
        for name in Bf:
            rec[pre + "buffers/" + name] = Bf[name].clone()
    return D, rec, margin


def write_golden(path):
    try:
        import h5py
    except ImportError:
        print("ref_decoder.py: h5py not available, skipping")
        sys.exit(77)
    torch.set_num_threads(1)
    for seed in range(100):
        D, rec, margin = run_golden(seed)
        if margin > 1e-3:
            break
    else:
        raise SystemExit("no seed with clear selections")
    with h5py.File(path, "w") as h:
        for k, v in rec.items():
            h.create_dataset(k, data=v.detach().numpy().astype(np.float32))
        h.attrs["seed"] = seed
        h.attrs["margin"] = margin
        # the decoder's dimension attributes, as decoder_dims_write names them
        dims = dict(grid=D.grid, d=D.d, in_ch=D.in_ch, e=D.e, blocks=D.blocks,
                    scans=D.scans, branches=len(D.dil), d_state=D.n, d_conv=D.k,
                    expand=D.E // D.e, out=D.out, n_self=D.nS, cycle=2)
        for key, v in dims.items():
            h.attrs[key] = np.int32(v)
        h.attrs["dilations"] = np.array(D.dil, dtype=np.int32)
        h.attrs["p_percent"] = D.p
    print("wrote %s (seed %d, selection margin %.3g)" % (path, seed, margin))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    write_golden(sys.argv[1])
