"""PyTorch reference for the backbones and the fused patch features.

Writes small random-weight models as safetensors files and, into one HDF5
file, their inputs, every block output and the fused features (SPEC section
2, steps 2-5, in the specification's order: group mean, bilinear
up-sampling to the grid, channel pooling, concatenation, pooling to d).

Models (all float32 arithmetic):
  dino  : DINOv2-with-registers-like ViT (patch 14, 4 registers, LayerScale),
          checkpoint grid 7 x 7 run at 70 x 70 (grid 5): the position
          embedding is interpolated with interpolate_offset 0.1 (bicubic,
          scale factor (g + 0.1) / G, no antialiasing), the variant the
          SNARM authors load. Saved twice with the same values: Hugging Face
          names in F32 and Meta names in BF16.
  timm  : timm-like ViT (class token with a position entry, no registers,
          no LayerScale, class head) at its native grid, saved in F16.
  swiglu: DINOv2-g-like ViT with a SwiGLU MLP (Meta names, F32).
  resnet: torchvision-like ResNet (basic blocks 2-2-2, width 8) with
          separate BatchNorm tensors; the same network with BatchNorm folded
          into the convolutions is saved as a second file.

Weights are rounded to values that BF16 and F16 represent exactly, so every
file holds the same numbers whatever its dtype.

usage: ref_backbone.py OUT.h5   (weights are written next to OUT.h5)
"""
import json
import math
import os
import struct
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # torch (or h5py) missing: the golden tests skip
    print("SKIP: %s" % e)
    sys.exit(77)

torch.manual_seed(1234)
torch.set_num_threads(2)

N_IMAGES = 2


def exact(t):
    """Round to a value exact in BF16 and F16 (tiny values flush to 0)."""
    t = t.float().bfloat16().float()
    ok = t.half().float() == t
    return torch.where(ok, t, torch.zeros_like(t))


def rand(*shape, std=1.0, mean=0.0):
    return exact(torch.randn(*shape) * std + mean)


def save_safetensors(path, tensors, dtype, metadata=None):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if dtype == "F32":
            raw = t.float().numpy().tobytes()
        elif dtype == "F16":
            raw = t.half().numpy().tobytes()
        else:
            raw = t.bfloat16().view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


# --------------------------------------------------------------------------
# ViT

def vit_params(dim, depth, mlp, patch, grid, n_reg, layerscale, swiglu,
               n_classes):
    def lin(o, i):
        return rand(o, i, std=1.0 / math.sqrt(i)), rand(o, std=0.1)

    p = {"cls": rand(1, 1, dim), "pos": rand(1, grid * grid + 1, dim, std=0.5),
         "reg": rand(1, n_reg, dim) if n_reg else None,
         "patch_w": rand(dim, 3, patch, patch, std=1.0 / math.sqrt(3 * patch * patch)),
         "patch_b": rand(dim, std=0.1), "blocks": []}
    for _ in range(depth):
        b = {}
        b["n1w"], b["n1b"] = rand(dim, std=0.1, mean=1.0), rand(dim, std=0.1)
        b["qkv_w"], b["qkv_b"] = lin(3 * dim, dim)
        b["proj_w"], b["proj_b"] = lin(dim, dim)
        b["n2w"], b["n2b"] = rand(dim, std=0.1, mean=1.0), rand(dim, std=0.1)
        b["fc1_w"], b["fc1_b"] = lin(2 * mlp if swiglu else mlp, dim)
        b["fc2_w"], b["fc2_b"] = lin(dim, mlp)
        if layerscale:
            b["ls1"], b["ls2"] = rand(dim, std=0.2, mean=0.5), rand(dim, std=0.2, mean=0.5)
        p["blocks"].append(b)
    p["norm_w"], p["norm_b"] = rand(dim, std=0.1, mean=1.0), rand(dim, std=0.1)
    if n_classes:
        p["head_w"], p["head_b"] = lin(n_classes, dim)
    return p


def vit_names_meta(p, swiglu, reg_name="register_tokens"):
    t = {"cls_token": p["cls"], "pos_embed": p["pos"],
         "patch_embed.proj.weight": p["patch_w"], "patch_embed.proj.bias": p["patch_b"],
         "norm.weight": p["norm_w"], "norm.bias": p["norm_b"]}
    if p["reg"] is not None:
        t[reg_name] = p["reg"]
    fc1, fc2 = ("w12", "w3") if swiglu else ("fc1", "fc2")
    for i, b in enumerate(p["blocks"]):
        pre = "blocks.%d." % i
        t[pre + "norm1.weight"], t[pre + "norm1.bias"] = b["n1w"], b["n1b"]
        t[pre + "attn.qkv.weight"], t[pre + "attn.qkv.bias"] = b["qkv_w"], b["qkv_b"]
        t[pre + "attn.proj.weight"], t[pre + "attn.proj.bias"] = b["proj_w"], b["proj_b"]
        t[pre + "norm2.weight"], t[pre + "norm2.bias"] = b["n2w"], b["n2b"]
        t[pre + "mlp.%s.weight" % fc1], t[pre + "mlp.%s.bias" % fc1] = b["fc1_w"], b["fc1_b"]
        t[pre + "mlp.%s.weight" % fc2], t[pre + "mlp.%s.bias" % fc2] = b["fc2_w"], b["fc2_b"]
        if "ls1" in b:
            t[pre + "ls1.gamma"], t[pre + "ls2.gamma"] = b["ls1"], b["ls2"]
    if "head_w" in p:
        t["head.weight"], t["head.bias"] = p["head_w"], p["head_b"]
    return t


def vit_names_hf(p):
    dim = p["cls"].shape[-1]
    t = {"embeddings.cls_token": p["cls"], "embeddings.position_embeddings": p["pos"],
         "embeddings.register_tokens": p["reg"],
         "embeddings.mask_token": torch.zeros(1, dim),
         "embeddings.patch_embeddings.projection.weight": p["patch_w"],
         "embeddings.patch_embeddings.projection.bias": p["patch_b"],
         "layernorm.weight": p["norm_w"], "layernorm.bias": p["norm_b"]}
    for i, b in enumerate(p["blocks"]):
        pre = "encoder.layer.%d." % i
        for j, part in enumerate(["query", "key", "value"]):
            rows = slice(j * dim, (j + 1) * dim)
            t[pre + "attention.attention.%s.weight" % part] = b["qkv_w"][rows]
            t[pre + "attention.attention.%s.bias" % part] = b["qkv_b"][rows]
        t[pre + "norm1.weight"], t[pre + "norm1.bias"] = b["n1w"], b["n1b"]
        t[pre + "attention.output.dense.weight"] = b["proj_w"]
        t[pre + "attention.output.dense.bias"] = b["proj_b"]
        t[pre + "norm2.weight"], t[pre + "norm2.bias"] = b["n2w"], b["n2b"]
        t[pre + "mlp.fc1.weight"], t[pre + "mlp.fc1.bias"] = b["fc1_w"], b["fc1_b"]
        t[pre + "mlp.fc2.weight"], t[pre + "mlp.fc2.bias"] = b["fc2_w"], b["fc2_b"]
        t[pre + "layer_scale1.lambda1"] = b["ls1"]
        t[pre + "layer_scale2.lambda1"] = b["ls2"]
    return t


def interpolate_pos(pos, g, offset):
    """DINOv2's position-embedding interpolation (the offset variant)."""
    cls, patch = pos[:, :1], pos[:, 1:]
    G, dim = int(round(math.sqrt(patch.shape[1]))), patch.shape[2]
    if g == G:
        return pos
    grid = patch.reshape(1, G, G, dim).permute(0, 3, 1, 2)
    sf = (g + offset) / G
    grid = F.interpolate(grid, scale_factor=(sf, sf), mode="bicubic", align_corners=False)
    assert grid.shape[-1] == g
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, g * g, dim)], dim=1)


def vit_forward(p, x, heads, patch, offset, swiglu, eps=1e-6):
    """Returns the residual stream after every block and the class logits."""
    n, dim = x.shape[0], p["cls"].shape[-1]
    tok = F.conv2d(x, p["patch_w"], p["patch_b"], stride=patch)
    g = tok.shape[-1]
    tok = tok.flatten(2).transpose(1, 2)
    tok = torch.cat([p["cls"].expand(n, -1, -1), tok], dim=1)
    tok = tok + interpolate_pos(p["pos"], g, offset)
    if p["reg"] is not None:
        tok = torch.cat([tok[:, :1], p["reg"].expand(n, -1, -1), tok[:, 1:]], dim=1)
    outs = []
    hd = dim // heads
    for b in p["blocks"]:
        h = F.layer_norm(tok, (dim,), b["n1w"], b["n1b"], eps)
        qkv = F.linear(h, b["qkv_w"], b["qkv_b"]).reshape(n, -1, 3, heads, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        a = (att @ v).transpose(1, 2).reshape(n, -1, dim)
        a = F.linear(a, b["proj_w"], b["proj_b"])
        tok = tok + (b["ls1"] * a if "ls1" in b else a)
        h = F.layer_norm(tok, (dim,), b["n2w"], b["n2b"], eps)
        h = F.linear(h, b["fc1_w"], b["fc1_b"])
        if swiglu:
            x1, x2 = h.chunk(2, dim=-1)
            h = F.silu(x1) * x2
        else:
            h = F.gelu(h)
        m = F.linear(h, b["fc2_w"], b["fc2_b"])
        tok = tok + (b["ls2"] * m if "ls2" in b else m)
        outs.append(tok.clone())
    logits = None
    if "head_w" in p:
        cls = F.layer_norm(tok[:, 0], (dim,), p["norm_w"], p["norm_b"], eps)
        logits = F.linear(cls, p["head_w"], p["head_b"])
    return outs, logits, g


# --------------------------------------------------------------------------
# Fused features (SPEC steps 3-5, in the specification's order)

def pool_channels(m, width):
    """Adaptive average pooling along the last axis of [cells, C]."""
    return F.adaptive_avg_pool1d(m.unsqueeze(1), width).squeeze(1)


def fuse(maps, grid, pool_dim, dim):
    """maps: list of [n, C, h, w] group maps -> [n, grid*grid, dim]."""
    n, pooled = maps[0].shape[0], []
    for m in maps:
        m = F.interpolate(m, size=(grid, grid), mode="bilinear", align_corners=False)
        cells = m.permute(0, 2, 3, 1).reshape(n * grid * grid, -1)
        pooled.append(pool_channels(cells, pool_dim))
    return pool_channels(torch.cat(pooled, dim=1), dim).reshape(n, grid * grid, dim)


def vit_features(outs, layers, groups, prefix, g, grid, pool_dim, dim):
    per, maps = len(layers) // groups, []
    for j in range(groups):
        sel = [outs[l][:, prefix:] for l in layers[j * per:(j + 1) * per]]
        m = torch.stack(sel).mean(0)
        n, _, c = m.shape
        maps.append(m.reshape(n, g, g, c).permute(0, 3, 1, 2))
    return fuse(maps, grid, pool_dim, dim)


# --------------------------------------------------------------------------
# ResNet

def resnet_params(width, blocks):
    p = {}

    def conv(name, bn, cin, cout, k):
        p[name + ".weight"] = rand(cout, cin, k, k, std=math.sqrt(2.0 / (cin * k * k)))
        p[bn + ".weight"] = rand(cout, std=0.2, mean=1.0)
        p[bn + ".bias"] = rand(cout, std=0.1)
        p[bn + ".running_mean"] = rand(cout, std=0.1)
        p[bn + ".running_var"] = exact(torch.rand(cout) * 0.5 + 0.75)

    conv("conv1", "bn1", 3, width, 7)
    cin = width
    for l in range(3):
        cout = width << l
        for b in range(blocks[l]):
            pre = "layer%d.%d." % (l + 1, b)
            stride = 2 if b == 0 and l > 0 else 1
            conv(pre + "conv1", pre + "bn1", cin, cout, 3)
            conv(pre + "conv2", pre + "bn2", cout, cout, 3)
            if stride != 1 or cin != cout:
                conv(pre + "downsample.0", pre + "downsample.1", cin, cout, 1)
            cin = cout
    return p


def bn(x, p, name):
    return F.batch_norm(x, p[name + ".running_mean"], p[name + ".running_var"],
                        p[name + ".weight"], p[name + ".bias"], False, 0.0, 1e-5)


def resnet_forward(p, x, blocks):
    x = F.relu(bn(F.conv2d(x, p["conv1.weight"], stride=2, padding=3), p, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for l in range(3):
        for b in range(blocks[l]):
            pre = "layer%d.%d." % (l + 1, b)
            stride = 2 if b == 0 and l > 0 else 1
            h = F.relu(bn(F.conv2d(x, p[pre + "conv1.weight"], stride=stride, padding=1),
                          p, pre + "bn1"))
            h = bn(F.conv2d(h, p[pre + "conv2.weight"], padding=1), p, pre + "bn2")
            if pre + "downsample.0.weight" in p:
                x = bn(F.conv2d(x, p[pre + "downsample.0.weight"], stride=stride), p,
                       pre + "downsample.1")
            x = F.relu(h + x)
        outs.append(x)
    return outs[1], outs[2]


def resnet_folded(p):
    out = {}
    for k in p:
        if not k.endswith(".weight") or p[k].dim() != 4:
            continue
        conv = k[:-len(".weight")]
        bnn = conv.replace("conv", "bn") if "downsample" not in conv else \
            conv[:-1] + "1"
        s = p[bnn + ".weight"] / torch.sqrt(p[bnn + ".running_var"] + 1e-5)
        out[conv + ".weight"] = p[k] * s[:, None, None, None]
        out[conv + ".bias"] = p[bnn + ".bias"] - p[bnn + ".running_mean"] * s
    return out


def save_resnet_bn(path, p):
    """Separate BatchNorm tensors, plus an I64 counter like torchvision's."""
    save_safetensors(path, p, "F32")
    # Append an I64 tensor by rewriting the header with it.
    with open(path, "rb") as f:
        hlen = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(hlen))
        data = f.read()
    header["bn1.num_batches_tracked"] = {"dtype": "I64", "shape": [],
                                         "data_offsets": [len(data), len(data) + 8]}
    data += struct.pack("<q", 100)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


# --------------------------------------------------------------------------

def write(h5, group, arrays, attrs):
    grp = h5.create_group(group)
    for k, v in arrays.items():
        grp.create_dataset(k, data=v.detach().float().numpy().astype(np.float32))
    for k, v in attrs.items():
        grp.attrs[k] = v


def case_dino(h5, folder):
    cfg = dict(dim=48, depth=4, heads=3, mlp=96, patch=14, grid=7, n_reg=4, size=70,
               layers=[0, 1, 2, 3], groups=2, fgrid=9, pool_dim=64, fdim=40)
    p = vit_params(cfg["dim"], cfg["depth"], cfg["mlp"], cfg["patch"], cfg["grid"],
                   cfg["n_reg"], True, False, 0)
    save_safetensors(os.path.join(folder, "backbone_dino_hf.safetensors"),
                     vit_names_hf(p), "F32", {"arch": "test"})
    save_safetensors(os.path.join(folder, "backbone_dino_meta_bf16.safetensors"),
                     vit_names_meta(p, False), "BF16")
    x = torch.randn(N_IMAGES, 3, cfg["size"], cfg["size"])
    outs, _, g = vit_forward(p, x, cfg["heads"], cfg["patch"], 0.1, False)
    feats = vit_features(outs, cfg["layers"], cfg["groups"], 1 + cfg["n_reg"], g,
                         cfg["fgrid"], cfg["pool_dim"], cfg["fdim"])
    arrays = {"input": x, "features": feats}
    arrays.update({"block%d" % i: o for i, o in enumerate(outs)})
    write(h5, "dino", arrays, {})


def case_timm(h5, folder):
    cfg = dict(dim=32, depth=4, heads=2, mlp=128, patch=8, grid=6, size=48,
               layers=[1, 3], groups=1, fgrid=7, pool_dim=24, fdim=16, classes=10)
    p = vit_params(cfg["dim"], cfg["depth"], cfg["mlp"], cfg["patch"], cfg["grid"], 0,
                   False, False, cfg["classes"])
    save_safetensors(os.path.join(folder, "backbone_timm_f16.safetensors"),
                     vit_names_meta(p, False), "F16")
    x = torch.randn(N_IMAGES, 3, cfg["size"], cfg["size"])
    outs, logits, g = vit_forward(p, x, cfg["heads"], cfg["patch"], 0.0, False)
    feats = vit_features(outs, cfg["layers"], cfg["groups"], 1, g, cfg["fgrid"],
                         cfg["pool_dim"], cfg["fdim"])
    arrays = {"input": x, "features": feats, "logits": logits}
    arrays.update({"block%d" % i: o for i, o in enumerate(outs)})
    write(h5, "timm", arrays, {})


def case_swiglu(h5, folder):
    p = vit_params(32, 2, 24, 14, 4, 4, True, True, 0)
    save_safetensors(os.path.join(folder, "backbone_swiglu.safetensors"),
                     vit_names_meta(p, True, "reg_token"), "F32")
    x = torch.randn(N_IMAGES, 3, 42, 42)
    outs, _, _ = vit_forward(p, x, 2, 14, 0.1, True)
    arrays = {"input": x}
    arrays.update({"block%d" % i: o for i, o in enumerate(outs)})
    write(h5, "swiglu", arrays, {})


def case_resnet(h5, folder):
    blocks, width, size, fgrid, pool_dim, fdim = [2, 2, 2], 8, 64, 10, 24, 12
    p = resnet_params(width, blocks)
    save_resnet_bn(os.path.join(folder, "backbone_resnet_bn.safetensors"), p)
    save_safetensors(os.path.join(folder, "backbone_resnet_folded.safetensors"),
                     resnet_folded(p), "F32")
    x = torch.randn(N_IMAGES, 3, size, size)
    l2, l3 = resnet_forward(p, x, blocks)
    m2 = F.avg_pool2d(l2, 3, 1, 1)  # count_include_pad=True, as PatchCore
    m3 = F.avg_pool2d(l3, 3, 1, 1)
    m3 = F.interpolate(m3, size=l2.shape[-2:], mode="bilinear", align_corners=False)
    feats = fuse([m2, m3], fgrid, pool_dim, fdim)
    write(h5, "resnet", {"input": x, "layer2": l2, "layer3": l3, "features": feats}, {})


def main():
    out = sys.argv[1]
    folder = os.path.dirname(os.path.abspath(out))
    tmp = out + ".tmp.%d" % os.getpid()
    with torch.no_grad(), h5py.File(tmp, "w") as h5:
        case_dino(h5, folder)
        case_timm(h5, folder)
        case_swiglu(h5, folder)
        case_resnet(h5, folder)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
