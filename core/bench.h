/*
 * bench.h - shared pieces of the "snarm bench" benchmarks.
 *
 * Benchmarks are never tests: they time, compare against peers measured in
 * the same run (PyTorch, faiss, the bare matrix product) and print one final
 * line "RESULT <name> key=value ...". Each benchmark is a function in the
 * table of core/cmd_bench.c.
 */
#ifndef SNARM_BENCH_H
#define SNARM_BENCH_H

/* Measured single-precision GEMM rate of this machine (GFLOP/s) for an
 * m x k by k x n product, best of a few repetitions, with the BLAS threads
 * currently configured. */
double bench_sgemm_gflops(int m, int n, int k);

/* Run a Python peer script ($SNARM_PYTHON or /usr/bin/python3) with args and
 * return the number it prints on its last line "TIME <seconds>"; a negative
 * value when Python, torch or the script is unavailable (reason logged). */
double bench_python_seconds(const char *script, const char *args);

/* Median of n doubles (the array is sorted in place). */
double bench_median(double *v, int n);

/* The benchmarks. argv[0] is the benchmark's name. */
int bench_sgemm(int argc, char **argv);
int bench_knn(int argc, char **argv);
int bench_coreset(int argc, char **argv);
int bench_metrics(int argc, char **argv);
int bench_vit(int argc, char **argv);
int bench_layers(int argc, char **argv);
int bench_train(int argc, char **argv);

#endif
