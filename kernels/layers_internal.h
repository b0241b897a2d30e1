/*
 * layers_internal.h - helpers shared by the layers' source files (not part
 * of the public API).
 */
#ifndef SNARM_LAYERS_INTERNAL_H
#define SNARM_LAYERS_INTERNAL_H

/* Channels per block of a column reduction: the threads split channel
 * blocks, never rows, so every sum runs over the rows in index order. */
#define LAYERS_COL_BLOCK 32

/* y[i][k] = v[k] for n rows of c floats. */
void layers_rows_fill(float *y, const float *v, long n, int c);
/* acc[k] += sum over rows of a[i][k], summed in double in row order. */
void layers_colsum_add(float *acc, const float *a, long n, int c);

#endif
