"""Brute-force references for the memory bank, kNN search and residuals.

Writes OUT (HDF5) with small random inputs and what straightforward loops
compute from them, every distance in float64 by direct differences:
  knn/<case>/{bank,q,k,idx,dist2}    top-k by full stable sort on (dist, index)
      cases: rand (random), ties (small integers: many exact ties, duplicate
      bank rows), big_k (k larger than the bank: -1 / inf padding)
  coreset/<case>/{x,proj,start,T,sel}
      PatchCore-style greedy k-centre loop (start point first), on x @ proj.T
      cases: rand, dup (every point twice: ties in the farthest point),
      ints (no projection, small integers: ties everywhere)
  res/{bank,f,k,g,R,nn_dist,w,bias,Q,Qstar,p,S,Rt,nn,H}
      inter residual with top-k averaging, waypoint map, self references,
      intra residual with self-exclusion, hybrid residual
  selfref/{qstar,p,S}                waypoint values with ties
Exits 77 when numpy or h5py is missing.
"""
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print("SKIP: reference needs numpy and h5py:", e)
    sys.exit(77)


def dist2_all(q, b):
    q = q.astype(np.float64)
    b = b.astype(np.float64)
    return ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def knn_brute(b, q, k):
    D = dist2_all(q, b)
    nq, nb = D.shape
    idx = np.full((nq, k), -1, np.int64)
    dist = np.full((nq, k), np.inf)
    for i in range(nq):
        order = sorted(range(nb), key=lambda j: (D[i, j], j))[:k]
        idx[i, : len(order)] = order
        dist[i, : len(order)] = D[i, order]
    return idx, dist


def greedy_loop(z, start, T):
    """PatchCore's loop: each point's distance to the nearest selected point,
    take the farthest (first on ties), update. The start point is selected."""
    z = z.astype(np.float64)
    n = z.shape[0]
    if T >= n:
        return np.arange(n)
    sel = [start]
    mind = np.full(n, np.inf)
    c = start
    for _ in range(T - 1):
        d = ((z - z[c]) ** 2).sum(1)
        mind = np.minimum(mind, d)
        c = int(np.argmax(mind))  # first maximal index
        sel.append(c)
    return np.array(sel)


def pool(v):
    """pool_d(concat(|v|, v^2)): adaptive average pooling 2d -> d."""
    d = v.shape[-1]
    cat = np.concatenate([np.abs(v), v * v], -1)
    out = np.empty(v.shape, np.float64)
    for c in range(d):
        lo = (c * 2 * d) // d
        hi = -((-(c + 1) * 2 * d) // d)  # ceil
        out[..., c] = cat[..., lo:hi].mean(-1)
    return out


def self_ref(qstar, p):
    M = len(qstar)
    n = int(np.floor(M * p / 100.0 + 0.5))
    order = sorted(range(M), key=lambda i: (qstar[i], i))[:n]
    return np.array(sorted(order))


def intra(f, S):
    D = dist2_all(f, f[S])
    nn = np.empty(len(f), np.int64)
    for i in range(len(f)):
        cand = [(D[i, a], S[a]) for a in range(len(S)) if S[a] != i]
        nn[i] = min(cand)[1]
    return nn, pool(f[nn].astype(np.float64) - f.astype(np.float64))


def put(g, name, v):
    g.create_dataset(name, data=np.asarray(v))


def knn_cases(h, rng):
    g = h.create_group("knn/rand")
    b = rng.standard_normal((300, 24)).astype(np.float32)
    q = rng.standard_normal((50, 24)).astype(np.float32)
    q[3] = b[17]  # a query on a bank vector: distance 0
    idx, dist = knn_brute(b, q, 5)
    for k, v in dict(bank=b, q=q, k=5, idx=idx, dist2=dist).items():
        put(g, k, v)

    g = h.create_group("knn/ties")
    b = rng.integers(-2, 3, (120, 6)).astype(np.float32)
    b[40:60] = b[0:20]  # duplicate rows
    q = rng.integers(-2, 3, (40, 6)).astype(np.float32)
    idx, dist = knn_brute(b, q, 7)
    for k, v in dict(bank=b, q=q, k=7, idx=idx, dist2=dist).items():
        put(g, k, v)

    g = h.create_group("knn/big_k")
    b = rng.standard_normal((4, 10)).astype(np.float32)
    q = rng.standard_normal((6, 10)).astype(np.float32)
    idx, dist = knn_brute(b, q, 6)
    for k, v in dict(bank=b, q=q, k=6, idx=idx, dist2=dist).items():
        put(g, k, v)


def coreset_case(h, name, x, proj, start, T):
    z = x.astype(np.float64) if proj is None else x.astype(np.float64) @ proj.T.astype(
        np.float64)
    g = h.create_group("coreset/" + name)
    put(g, "x", x)
    put(g, "proj", proj if proj is not None else np.zeros((0,), np.float32))
    put(g, "start", start)
    put(g, "T", T)
    put(g, "sel", greedy_loop(z, start, T))


def coreset_cases(h, rng):
    x = rng.standard_normal((1500, 32)).astype(np.float32)
    proj = (rng.standard_normal((8, 32)) / np.sqrt(8)).astype(np.float32)
    coreset_case(h, "rand", x, proj, 123, 200)
    half = rng.standard_normal((400, 32)).astype(np.float32)
    coreset_case(h, "dup", np.concatenate([half, half]), proj, 5, 150)
    ints = rng.integers(0, 4, (600, 4)).astype(np.float32)
    coreset_case(h, "ints", ints, None, 7, 100)


def residual_case(h, rng):
    g = h.create_group("res")
    d, M, k = 16, 49, 3
    bank = rng.standard_normal((200, d)).astype(np.float32)
    f = rng.standard_normal((M, d)).astype(np.float32)
    f[10] = f[4]  # identical cells: intra ties, self-exclusion
    f[30] = f[4]
    idx, dist = knn_brute(bank, f, k)
    gref = bank[idx].astype(np.float64).mean(1)
    R = pool(gref - f)
    w = (rng.standard_normal(d) * 0.3).astype(np.float32)
    bias = np.float32(-0.2)
    Q = 1.0 / (1.0 + np.exp(-(R @ w.astype(np.float64) + bias)))
    Qstar = Q + R.mean(1)
    p = 75.0
    S = self_ref(Qstar, p)
    nn, Rt = intra(f, S)
    for key, v in dict(bank=bank, f=f, k=k, g=gref, R=R, nn_dist=np.sqrt(dist[:, 0]),
                       w=w, bias=bias, Q=Q, Qstar=Qstar, p=p, S=S, Rt=Rt, nn=nn,
                       H=np.concatenate([R, Rt], 1)).items():
        put(g, key, v)

    g = h.create_group("selfref")
    qs = np.round(rng.random(60) * 4) / 4  # five values: many ties
    put(g, "qstar", qs.astype(np.float32))
    put(g, "p", 40.0)
    put(g, "S", self_ref(qs, 40.0))


def main():
    rng = np.random.default_rng(20261203)
    with h5py.File(sys.argv[1], "w") as h:
        knn_cases(h, rng)
        coreset_cases(h, rng)
        residual_case(h, rng)


if __name__ == "__main__":
    main()
