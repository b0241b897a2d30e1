#!/usr/bin/python3
"""Golden references for data/image.c: resampling against PyTorch and PIL,
and decoding against PIL on files that PIL itself writes.

Writes OUT.h5 and, beside it, the folder OUT.h5.files/ with the image files
(PNG 8/16-bit grey, grey+alpha, RGB, RGBA, palette with and without
transparency, 1-bit; JPEG grey and RGB). For each file the HDF5 holds PIL's
decoding as float RGB in [0, 1] (16-bit divided by 65535, grey repeated,
alpha dropped).

Resampling references (float32 inputs, HWC):
  bl_*   torch.nn.functional.interpolate(mode='bilinear', align_corners=False)
  bc_*   PIL Image.resize(BICUBIC) on mode 'F' (float) images, per channel
  nn_*   torch interpolate(mode='nearest') on a 0/1 mask
  pre_*  resize R x R bilinear then the torchvision centre crop C x C
  mpre_* the mask under the same geometry, bilinear >= 0.5 and nearest

Usage: ref_image.py OUT.h5     (exits 77 when torch, PIL or h5py is missing)
"""
import os
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
except ImportError as err:
    print(f"SKIP: {err}")
    sys.exit(77)

BICUBIC = getattr(Image, "Resampling", Image).BICUBIC


def put(f, name, a):
    f.create_dataset(name, data=np.asarray(a, dtype=np.float32))


def torch_resize(hwc, h, w, mode):
    t = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]
    kw = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(t, size=(h, w), mode=mode, **kw)
    return out[0].numpy().transpose(1, 2, 0)


def pil_bicubic(hwc, h, w):
    chans = [np.asarray(Image.fromarray(hwc[:, :, c], mode="F").resize((w, h), BICUBIC))
             for c in range(hwc.shape[2])]
    return np.stack(chans, axis=2)


def centre_crop(hwc, c):
    # torchvision CenterCrop: int(round((size - crop) / 2)), round half to even
    top = int(round((hwc.shape[0] - c) / 2.0))
    left = int(round((hwc.shape[1] - c) / 2.0))
    return hwc[top:top + c, left:left + c]


def resampling(f, rng):
    src = rng.random((29, 37, 3), dtype=np.float32)
    put(f, "bl_src", src)
    for h, w in [(16, 20), (61, 50), (29, 37), (7, 5), (58, 74)]:
        put(f, f"bl_{h}x{w}", torch_resize(src, h, w, "bilinear"))

    src = rng.random((40, 50, 3), dtype=np.float32)
    put(f, "bc_src", src)
    for h, w in [(20, 17), (13, 25), (80, 64), (40, 50), (28, 28)]:
        put(f, f"bc_{h}x{w}", pil_bicubic(src, h, w))

    m = (rng.random((23, 31, 1)) > 0.6).astype(np.float32)
    put(f, "nn_src", m)
    for h, w in [(46, 62), (10, 13), (23, 31), (37, 19)]:
        put(f, f"nn_{h}x{w}", torch_resize(m, h, w, "nearest"))


def preprocess(f, rng):
    img = rng.random((50, 70, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:50, 0:70]
    mask = (((yy - 22) ** 2 + (xx - 31) ** 2) < 120) | ((xx > 50) & (yy < 9))
    put(f, "pre_src", img)
    put(f, "mpre_src", mask.astype(np.float32)[:, :, None])
    for r, c in [(64, 56), (65, 56), (40, 40)]:
        put(f, f"pre_{r}_{c}", centre_crop(torch_resize(img, r, r, "bilinear"), c))
        m = torch_resize(mask.astype(np.float32)[:, :, None], r, r, "bilinear")
        put(f, f"mpre_bilinear_half_{r}_{c}", centre_crop((m >= 0.5).astype(np.float32), c))
        m = torch_resize(mask.astype(np.float32)[:, :, None], r, r, "nearest")
        put(f, f"mpre_nearest_{r}_{c}", centre_crop(m, c))


def decode_ref(path):
    im = Image.open(path)
    im.load()
    if im.mode in ("I;16", "I;16B", "I"):
        a = np.asarray(im).astype(np.float64) / 65535.0
        return np.repeat(a[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB")).astype(np.float64) / 255.0


def decoding(f, rng, folder):
    h, w = 19, 27
    rgb = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 9) % 256, (yy * 13) % 256, ((xx + yy) * 5) % 256], 2)
    grey16 = (rng.random((h, w)) * 65535).astype(np.uint16)
    grey16[0, :3] = [0, 32768, 65535]
    files = {
        "rgb8.png": Image.fromarray(rgb, "RGB"),
        "rgba8.png": Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), "RGBA"),
        "la8.png": Image.fromarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]]), "LA"),
        "l8.png": Image.fromarray(rgb[:, :, 0], "L"),
        "l16.png": Image.fromarray(grey16, "I;16"),
        "bit1.png": Image.fromarray(rgb[:, :, 0] > 127).convert("1"),
        "pal.png": Image.fromarray(rgb, "RGB").quantize(colors=16),
        "grey.jpg": Image.fromarray(smooth[:, :, 0].astype(np.uint8), "L"),
        "rgb.jpg": Image.fromarray(smooth.astype(np.uint8), "RGB"),
    }
    pal_t = Image.fromarray(rgb, "RGB").quantize(colors=8)
    pal_t.info["transparency"] = 3
    for name, im in files.items():
        im.save(os.path.join(folder, name), quality=90) if name.endswith(".jpg") \
            else im.save(os.path.join(folder, name))
    pal_t.save(os.path.join(folder, "pal_trns.png"), transparency=3)
    for name in list(files) + ["pal_trns.png"]:
        put(f, "dec_" + name.replace(".", "_"), decode_ref(os.path.join(folder, name)))


def main():
    out = sys.argv[1]
    folder = out + ".files"
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(7)
    tmp = out + ".tmp"
    with h5py.File(tmp, "w") as f:
        resampling(f, rng)
        preprocess(f, rng)
        decoding(f, rng, folder)
    os.replace(tmp, out)
    print(f"wrote {out} and {folder}/")


if __name__ == "__main__":
    main()
