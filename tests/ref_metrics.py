"""Reference values for snarm's metrics and post-processing.

Writes OUT (an HDF5 file) with, per case, the inputs and what the reference
libraries compute from them:
  roc/<case>/{scores,labels,auroc,ap}   sklearn roc_auc_score and
                                        average_precision_score (NaN where
                                        sklearn refuses: one class only)
  pix/<case>/{maps,masks,p_auroc,p_ap,pro}
                                        pixel metrics over all pixels; pro from
                                        the brute-force AUPRO below
  gauss/<case>/{in,out,sigma}           scipy.ndimage.gaussian_filter
  pool/<case>/{in,score,pool,stride}    max of k x k average pooling (numpy)
  foreign/<class>/{p_ap,pro,p_auroc,i_auroc}
                                        metrics of the maps file written with
                                        h5py next to OUT (metrics_foreign.h5):
                                        float16 maps, 0/255 masks, a class with
                                        only good images.
Every reference value is stored as float64. Exits 77 when sklearn, scipy or
h5py is missing.
"""
import os
import sys
import warnings

try:
    import h5py
    import numpy as np
    from scipy import ndimage
    from sklearn.metrics import average_precision_score, roc_auc_score
except ImportError as e:  # the tests that need this file then skip
    print("SKIP: reference needs numpy, scipy, sklearn and h5py:", e)
    sys.exit(77)

FPR_LIMIT = 0.3


def sk_auroc(y, s):
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def sk_ap(y, s):
    if not np.any(y):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(y, s))


def aupro_brute(maps, masks, limit=FPR_LIMIT):
    """Threshold at every distinct score, measure each region's overlap and the
    false positive rate directly, integrate with np.trapz up to the limit."""
    eight = np.ones((3, 3), dtype=int)
    regions = []
    for i in range(maps.shape[0]):
        lab, n = ndimage.label(masks[i] != 0, structure=eight)
        regions += [(i, lab == r) for r in range(1, n + 1)]
    neg = masks == 0
    if not regions or not neg.any():
        return float("nan")
    fpr, pro = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        fpr.append((pred & neg).sum() / neg.sum())
        pro.append(np.mean([pred[i][r].mean() for i, r in regions]))
    fpr, pro = np.array(fpr), np.array(pro)
    k = np.argmax(fpr > limit) if (fpr > limit).any() else len(fpr)
    xs, ys = list(fpr[:k]), list(pro[:k])
    if k < len(fpr):
        f = (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        xs.append(limit)
        ys.append(pro[k - 1] + f * (pro[k] - pro[k - 1]))
    return float(np.trapz(ys, xs) / limit)


def put(f, name, value):
    f[name] = np.asarray(value, dtype=np.float64) if np.isscalar(value) else value


def roc_cases(rng):
    n = 500
    return {
        "random": (rng.random(n).astype(np.float32), rng.random(n) < 0.3),
        "tied": ((rng.integers(0, 7, n) / 7).astype(np.float32), rng.random(n) < 0.5),
        "tied_coarse": (rng.integers(0, 2, 40).astype(np.float32), rng.random(40) < 0.5),
        "all_equal": (np.full(50, 0.25, np.float32), rng.random(50) < 0.5),
        "one_positive": (rng.random(30).astype(np.float32), np.eye(1, 30, 7)[0] > 0),
        "all_negative": (rng.random(30).astype(np.float32), np.zeros(30, bool)),
        "all_positive": (rng.random(30).astype(np.float32), np.ones(30, bool)),
        "perfect": (np.arange(20, dtype=np.float32), np.arange(20) >= 10),
        "inverted": (np.arange(20, dtype=np.float32), np.arange(20) < 10),
        "signed_zero": (np.array([-0.0, 0.0, 0.0, -0.0, 1.0], np.float32),
                        np.array([1, 0, 1, 0, 1], bool)),
        "large_range": ((rng.standard_normal(300) * 1e30).astype(np.float32),
                        rng.random(300) < 0.4),
        # over 2^16 of each kind: the multi-threaded sort
        "large": (rng.random(300000).astype(np.float32), rng.random(300000) < 0.5),
    }


def blob_masks(rng, n, h, w, k):
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(0, k + 1)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.integers(1, 4), rng.integers(1, 4)
            masks[i, max(0, y - ry):y + ry, max(0, x - rx):x + rx] = 1
    return masks


def pix_cases(rng):
    cases = {}
    m = blob_masks(rng, 5, 12, 14, 3)
    maps = (rng.random(m.shape) + 0.6 * m).astype(np.float32)
    cases["random"] = (maps, m)
    m = blob_masks(rng, 4, 10, 10, 3)
    maps = (np.round((rng.random(m.shape) + 0.5 * m) * 6) / 6).astype(np.float32)
    cases["tied"] = (maps, m)
    m = np.zeros((3, 8, 8), np.uint8)
    m[0, 1, 1] = m[0, 2, 2] = m[0, 3, 3] = 1  # one diagonal region (8-connected)
    m[1, 5:8, 0:2] = 255  # 0/255 masks are read as != 0
    maps = rng.random(m.shape).astype(np.float32)
    cases["diagonal_255"] = (maps, m)
    m = blob_masks(rng, 3, 9, 9, 2)
    m[1] = 0  # a defective image may have an empty mask; it only adds negatives
    maps = np.full(m.shape, 0.5, np.float32)
    maps[m != 0] = 0.5
    cases["all_equal"] = (maps, m)
    m = blob_masks(rng, 4, 16, 16, 4)
    maps = ndimage.gaussian_filter(rng.random(m.shape) + 0.8 * m, (0, 1.5, 1.5))
    cases["smooth"] = (maps.astype(np.float32), m)
    # over 2^16 pixels both with and without defects (the multi-threaded
    # sort of either list); 50 score levels keep the brute-force AUPRO quick
    m = np.zeros((6, 200, 200), np.uint8)
    for i in range(6):
        for _ in range(6):
            y, x, ry, rx = rng.integers(0, 200, 2).tolist() + rng.integers(10, 45, 2).tolist()
            m[i, max(0, y - ry):y + ry, max(0, x - rx):x + rx] = 1
    maps = np.round((rng.random(m.shape) + 0.3 * m) * 49) / 49
    cases["large_tied"] = (maps.astype(np.float32), m)
    return cases


def write_foreign(path, rng):
    """A maps file as another tool would write it with h5py."""
    n, h, w = 10, 12, 12
    masks = blob_masks(rng, n, h, w, 2) * 255
    labels = np.array([(masks[i] != 0).any() for i in range(n)], np.uint8)
    cls = ["screw"] * 6 + ["only_good"] * 4
    masks[6:] = 0
    labels[6:] = 0
    maps16 = (rng.random((n, h, w)) + 0.7 * (masks != 0)).astype(np.float16)
    scores = maps16.reshape(n, -1).max(1).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["maps"] = maps16
        f["masks"] = masks.astype(np.uint8)
        f["scores"] = scores
        f["labels"] = labels
        f["class"] = np.array(cls, dtype=h5py.string_dtype())
        f["path"] = np.array(["img%d.png" % i for i in range(n)], dtype=h5py.string_dtype())
        f.attrs["method"] = "foreign"
        f.attrs["setting"] = "single"
        f.attrs["dataset"] = "toy"
    return maps16.astype(np.float32), masks, scores, labels, np.array(cls)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20240611)
    with h5py.File(out, "w") as f:
        for name, (s, y) in roc_cases(rng).items():
            g = f"roc/{name}/"
            put(f, g + "scores", s)
            put(f, g + "labels", y.astype(np.uint8))
            put(f, g + "auroc", sk_auroc(y, s))
            put(f, g + "ap", sk_ap(y, s))
        for name, (maps, m) in pix_cases(rng).items():
            g = f"pix/{name}/"
            y = (m != 0).ravel()
            put(f, g + "maps", maps)
            put(f, g + "masks", m)
            put(f, g + "p_auroc", sk_auroc(y, maps.ravel()))
            put(f, g + "p_ap", sk_ap(y, maps.ravel()))
            put(f, g + "pro", aupro_brute(maps, m))
        for name, (shape, sigma) in {"s4": ((40, 37), 4.0), "s1_5": ((9, 11), 1.5),
                                     "tiny": ((5, 7), 4.0)}.items():
            x = rng.random(shape).astype(np.float32)
            g = f"gauss/{name}/"
            put(f, g + "in", x)
            put(f, g + "out", ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=4.0))
            put(f, g + "sigma", sigma)
        for name, (shape, k, s) in {"k16s2": ((50, 45), 16, 2), "k3s1": ((7, 9), 3, 1),
                                    "k4s3": ((13, 10), 4, 3)}.items():
            x = rng.random(shape).astype(np.float32)
            means = [x[y:y + k, c:c + k].astype(np.float64).mean()
                     for y in range(0, shape[0] - k + 1, s)
                     for c in range(0, shape[1] - k + 1, s)]
            g = f"pool/{name}/"
            put(f, g + "in", x)
            put(f, g + "score", max(means))
            put(f, g + "pool", float(k))
            put(f, g + "stride", float(s))
        fpath = os.path.join(os.path.dirname(os.path.abspath(out)), "metrics_foreign.h5")
        maps, masks, scores, labels, cls = write_foreign(fpath, rng)
        for c in ("screw", "only_good"):
            sel = cls == c
            g = f"foreign/{c}/"
            y = (masks[sel] != 0).ravel()
            put(f, g + "p_auroc", sk_auroc(y, maps[sel].ravel()))
            put(f, g + "p_ap", sk_ap(y, maps[sel].ravel()))
            put(f, g + "pro", aupro_brute(maps[sel], masks[sel]))
            put(f, g + "i_auroc", sk_auroc(labels[sel], scores[sel]))


if __name__ == "__main__":
    main()
