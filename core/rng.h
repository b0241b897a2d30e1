/*
 * rng.h - the one seeded pseudo-random generator (xoshiro256**).
 *
 * Every random choice in snarm (coreset start, projections, synthetic defects,
 * feature jitter, dropout, few-shot draws, weight initialisation) draws from
 * an rng_state seeded from the run's base seed and a stream id, never from the
 * clock. The state is four 64-bit words and is saved with checkpoints.
 */
#ifndef SNARM_RNG_H
#define SNARM_RNG_H

#include <stdint.h>

struct rng_state {
    uint64_t s[4];
};

/* Seed from a base seed and a stream (e.g. the rank or a purpose tag). */
void rng_seed(struct rng_state *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(struct rng_state *r);
/* Uniform in [0, 1) with 53 bits. */
double rng_uniform(struct rng_state *r);
/* Uniform integer in [0, n). */
uint64_t rng_below(struct rng_state *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value so state is exact). */
double rng_normal(struct rng_state *r);
/* Fill with standard normals as float. */
void rng_fill_normal(struct rng_state *r, float *out, long n, float scale);
/* Fisher-Yates shuffle of n ints. */
void rng_shuffle(struct rng_state *r, int *v, int n);
/* Stable 64-bit hash of a string, for deriving stream ids from names. */
uint64_t rng_hash_str(const char *s);

#endif
