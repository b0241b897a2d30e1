#!/usr/bin/python3
"""Golden references for kernels/layers: inputs, weights, outputs and every
gradient of the decoder's building blocks, written to one HDF5 file.

Inputs are drawn in float32 (so C reads them exactly) and the references are
computed in float64, so a C result is compared with the exact value and its
tolerance only has to cover the C side's float rounding. AdamW is the
exception: it is run by torch.optim.AdamW itself on float32 tensors, as
training would. Feature maps are stored HWC (N, H, W, C), as the C layers
use them; weights keep PyTorch's layout.

Usage: ref_layers.py OUT.h5      (exits 77 when torch or h5py is missing)
"""
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as err:
    print(f"SKIP: {err}")
    sys.exit(77)

EPS = 1e-5


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def put(f, name, t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    f.create_dataset(name, data=np.asarray(t, dtype=np.float32))


def rand(*shape, scale=1.0):
    """float32 draws, returned as float64 leaf tensors with gradients."""
    t = (torch.randn(*shape, dtype=torch.float32) * scale).double()
    return t.requires_grad_(True)


def conv1x1_case(f, name, n, cin, cout):
    x, w, b = rand(n, cin), rand(cout, cin, scale=0.5), rand(cout)
    y = x @ w.t() + b
    dy = rand(n, cout).detach()
    y.backward(dy)
    for k, v in dict(x=x, w=w, b=b, dy=dy, y=y, dx=x.grad, dw=w.grad,
                     db=b.grad).items():
        put(f, f"{name}/{k}", v)


def conv3x3_case(f, name, n, h, w_, cin, cout, dil):
    x = rand(n, cin, h, w_)
    w, b = rand(cout, cin, 3, 3, scale=0.3), rand(cout)
    y = F.conv2d(x, w, b, padding=dil, dilation=dil)
    dy = rand(*y.shape).detach()
    y.backward(dy)
    for k, v in dict(x=nhwc(x), w=w, b=b, dy=nhwc(dy), y=nhwc(y),
                     dx=nhwc(x.grad), dw=w.grad, db=b.grad).items():
        put(f, f"{name}/{k}", v)


def batchnorm_case(f, name, n, c, h, w_):
    bn = torch.nn.BatchNorm2d(c, eps=EPS, momentum=0.1).double()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c).float().double())
        bn.bias.copy_(torch.randn(c).float().double())
        bn.running_mean.copy_(torch.randn(c).float().double())
        bn.running_var.copy_(torch.rand(c).float().double() + 0.5)
    put(f, f"{name}/gamma", bn.weight)
    put(f, f"{name}/beta", bn.bias)
    put(f, f"{name}/run_mean0", bn.running_mean)
    put(f, f"{name}/run_var0", bn.running_var)

    # Train mode: batch statistics, running statistics updated.
    x = rand(n, c, h, w_, scale=2.0)
    with torch.no_grad():
        x += 0.5
    y = bn.train()(x)
    dy = rand(*y.shape).detach()
    y.backward(dy)
    for k, v in dict(x=nhwc(x), dy=nhwc(dy), y=nhwc(y), dx=nhwc(x.grad),
                     dgamma=bn.weight.grad, dbeta=bn.bias.grad,
                     run_mean=bn.running_mean, run_var=bn.running_var).items():
        put(f, f"{name}/{k}", v)

    # Eval mode on fresh input, with the updated running statistics.
    x2 = rand(n, c, h, w_).detach()
    with torch.no_grad():
        put(f, f"{name}/x_eval", nhwc(x2))
        put(f, f"{name}/y_eval", nhwc(bn.eval()(x2)))


def norm_cases(f, b, l, c):
    # RMSNorm as in the Mamba reference implementation (no torch module in 1.13).
    x, w = rand(b, l, c, scale=1.5), rand(c)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w
    dy = rand(b, l, c).detach()
    y.backward(dy)
    for k, v in dict(x=x, w=w, dy=dy, y=y, dx=x.grad, dw=w.grad).items():
        put(f, f"rmsnorm/{k}", v)

    x, w, bias = rand(b, l, c, scale=1.5), rand(c), rand(c)
    with torch.no_grad():
        x += 0.7
    y = F.layer_norm(x, (c,), w, bias, EPS)
    dy = rand(b, l, c).detach()
    y.backward(dy)
    for k, v in dict(x=x, w=w, b=bias, dy=dy, y=y, dx=x.grad, dw=w.grad,
                     db=bias.grad).items():
        put(f, f"layernorm/{k}", v)


def upsample_case(f, name, n, c, h, w_, oh, ow, align):
    x = rand(n, c, h, w_)
    y = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=align)
    dy = rand(*y.shape).detach()
    y.backward(dy)
    for k, v in dict(x=nhwc(x), dy=nhwc(dy), y=nhwc(y), dx=nhwc(x.grad)).items():
        put(f, f"{name}/{k}", v)

    # PyTorch's own float32 kernel, which the C code follows step by step.
    x32 = x.detach().float().requires_grad_(True)
    y32 = F.interpolate(x32, size=(oh, ow), mode="bilinear", align_corners=align)
    y32.backward(dy.float())
    put(f, f"{name}/y32", nhwc(y32))
    put(f, f"{name}/dx32", nhwc(x32.grad))


def focal_logit_ref(x, t, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss, reduction "mean" (torchvision is
    not installed here; this is its definition, line for line)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


def focal_prob_ref(p, t, alpha, gamma, eps=1e-6):
    """The same loss on probabilities, p_t clamped to [eps, 1] (layers.h)."""
    p_t = torch.clamp(p * t + (1 - p) * (1 - t), min=eps)
    alpha_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1.0
    return (-alpha_t * (1 - p_t) ** gamma * torch.log(p_t)).mean()


def focal_cases(f):
    n = 1000
    extremes = torch.tensor([-40.0, -30.0, -12.0, -1e-3, 0.0, 1e-3, 12.0, 30.0, 40.0])
    logits = torch.cat([torch.randn(n - 2 * len(extremes)) * 4, extremes, extremes])
    t = (torch.rand(n) < 0.3).float()
    t[-2 * len(extremes):-len(extremes)] = 1.0
    t[-len(extremes):] = 0.0
    put(f, "focal/logit", logits)
    put(f, "focal/target", t)
    probs = torch.sigmoid(torch.randn(n) * 3)
    probs[:6] = torch.tensor([0.0, 1.0, 1e-8, 1 - 1e-8, 0.5, 1e-3])
    put(f, "focal/prob", probs)
    for tag, alpha, gamma in (("a25g4", 0.25, 4.0), ("a50g4", 0.5, 4.0),
                              ("a25g1.5", 0.25, 1.5), ("noalpha_g2", -1.0, 2.0)):
        x = logits.double().requires_grad_(True)
        loss = focal_logit_ref(x, t.double(), alpha, gamma)
        loss.backward()
        put(f, f"focal/logit_{tag}/loss", loss.reshape(1))
        put(f, f"focal/logit_{tag}/dlogit", x.grad)
        p = probs.double().requires_grad_(True)
        loss = focal_prob_ref(p, t.double(), alpha, gamma)
        loss.backward()
        put(f, f"focal/prob_{tag}/loss", loss.reshape(1))
        put(f, f"focal/prob_{tag}/dp", p.grad)


def adamw_case(f):
    """Two parameter tensors; the second has no gradient at step 2, as an
    inactive branch under cyclic training: torch skips it, so its own step
    count is 2 at the third step."""
    pa, pb = torch.randn(20), torch.randn(17)
    put(f, "adamw/p0", torch.cat([pa, pb]))
    pa, pb = pa.clone().requires_grad_(True), pb.clone().requires_grad_(True)
    opt = torch.optim.AdamW([pa, pb], lr=1e-3, weight_decay=0.05)
    for step in (1, 2, 3):
        ga, gb = torch.randn(20), torch.randn(17) * 0.01
        opt.zero_grad(set_to_none=True)
        pa.grad = ga.clone()
        put(f, f"adamw/g{step}", torch.cat([ga, gb]))
        if step != 2:
            pb.grad = gb.clone()
        opt.step()
        put(f, f"adamw/p{step}", torch.cat([pa, pb]))
    put(f, "adamw/m3", torch.cat([opt.state[pa]["exp_avg"], opt.state[pb]["exp_avg"]]))
    put(f, "adamw/v3", torch.cat([opt.state[pa]["exp_avg_sq"],
                                  opt.state[pb]["exp_avg_sq"]]))


def main():
    if len(sys.argv) != 2:
        print("usage: ref_layers.py OUT.h5")
        return 2
    torch.manual_seed(1234)
    out = sys.argv[1]
    with h5py.File(out + ".tmp", "w") as f:
        conv1x1_case(f, "conv1x1", 30, 7, 5)
        conv1x1_case(f, "conv1x1_head", 30, 7, 1)
        for dil in (1, 3, 8):
            conv3x3_case(f, f"conv3x3_d{dil}", 2, 7, 9, 5, 6, dil)
        batchnorm_case(f, "batchnorm", 3, 6, 4, 5)
        norm_cases(f, 2, 7, 16)
        upsample_case(f, "up_ac", 2, 1, 5, 6, 17, 13, True)
        upsample_case(f, "up_ac_head", 1, 1, 49, 49, 392, 392, True)
        upsample_case(f, "up_hp", 2, 3, 5, 6, 11, 14, False)
        upsample_case(f, "up_hp_down", 1, 2, 9, 8, 4, 5, False)
        focal_cases(f)
        adamw_case(f)
    import os
    os.replace(out + ".tmp", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
