/*
 * testutil.h - the small harness shared by snarm's C tests.
 *
 * A test binary calls the TU_CHECK macros, which count failures and print the
 * file and line of each; tu_finish() prints "N passed, M failed" and returns
 * the exit status (0 only when nothing failed). tu_skip() exits with 77, which
 * CTest reports as skipped, after printing why.
 *
 * Golden references are HDF5 files written by the PyTorch scripts under
 * tests/ (h5py): one float32 dataset per tensor. tu_ref_read() loads one as
 * a flat float array; tu_close() compares with |a-b| <= atol + rtol*|b| and
 * prints the largest difference either way.
 */
#ifndef SNARM_TESTUTIL_H
#define SNARM_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

extern int tu_passed, tu_failed;

#define TU_CHECK(cond)                                                          \
    do {                                                                        \
        if (cond) {                                                             \
            tu_passed++;                                                        \
        } else {                                                                \
            tu_failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                       \
    } while (0)

#define TU_CHECK_MSG(cond, ...)                                                 \
    do {                                                                        \
        if (cond) {                                                             \
            tu_passed++;                                                        \
        } else {                                                                \
            tu_failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Expect a status of SN_EUSER whose message contains needle. */
#define TU_CHECK_ERR(status, needle) tu_check_err_at((status), (needle), __FILE__, __LINE__)
void tu_check_err_at(int status, const char *needle, const char *file, int line);

/* Compare n floats; returns 1 when all are within atol + rtol * |want|. */
int tu_close(const char *what, const float *got, const float *want, long n,
             double atol, double rtol);
#define TU_CLOSE(what, got, want, n, atol, rtol)                                \
    TU_CHECK_MSG(tu_close((what), (got), (want), (n), (atol), (rtol)),          \
                 "%s differs beyond tolerance", (what))

void tu_skip(const char *why, ...);
int tu_finish(const char *name);

/* $SNARM_SHARED/<rel> if it exists, else NULL (caller decides to skip). */
const char *tu_shared(const char *rel);
/* $SNARM_TEST_REF/<name> (golden files written by fixtures). */
const char *tu_ref_path(const char *name);
/* A fresh empty temporary directory, removed by the caller if it wishes. */
const char *tu_tmpdir(const char *tag);

/* Golden HDF5 access. tu_ref_read returns NULL (and fails the test) when the
 * dataset is missing; *n receives the element count, shape the dims if given. */
float *tu_ref_read(const char *file, const char *name, long *n);
long *tu_ref_shape(const char *file, const char *name, int *ndim);
int tu_ref_has(const char *file, const char *name);
double tu_ref_scalar(const char *file, const char *name);

#endif
