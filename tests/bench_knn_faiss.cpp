// Peer for "snarm bench knn": faiss IndexFlatL2 exact search, timed the way
// the bench times snarm (best of the repetitions, one search = one image).
// Built by the bench at run time, only when faiss is installed; never part
// of the snarm library.
//   usage: bench_knn_faiss NB D NQ K REPS     prints "TIME <seconds>"
#include <faiss/IndexFlat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

static double seconds_now()
{
    using clk = std::chrono::steady_clock;
    return std::chrono::duration<double>(clk::now().time_since_epoch()).count();
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s NB D NQ K REPS\n", argv[0]);
        return 2;
    }
    long nb = std::atol(argv[1]), nq = std::atol(argv[3]);
    int d = std::atoi(argv[2]), k = std::atoi(argv[4]), reps = std::atoi(argv[5]);

    // Gaussian bank and queries (the timing does not depend on the values).
    std::mt19937_64 gen(12345);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> bank((size_t)nb * d), q((size_t)nq * d);
    for (auto &v : bank) v = nd(gen);
    for (auto &v : q) v = nd(gen);

    faiss::IndexFlatL2 index(d);
    index.add(nb, bank.data());
    std::vector<float> dist((size_t)nq * k);
    std::vector<faiss::Index::idx_t> idx((size_t)nq * k);

    // One warm-up search, then the best of reps.
    index.search(nq, q.data(), k, dist.data(), idx.data());
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        double t0 = seconds_now();
        index.search(nq, q.data(), k, dist.data(), idx.data());
        t.push_back(seconds_now() - t0);
    }
    std::printf("TIME %.6f\n", *std::min_element(t.begin(), t.end()));
    return 0;
}
