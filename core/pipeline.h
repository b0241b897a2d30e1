/*
 * pipeline.h - the stages of one work unit, end to end.
 *
 *   extract   fused backbone features of every image of a (dataset, class,
 *             split), cached in the HDF5 feature store and shared by every
 *             unit that needs the same features; also the synthetic
 *             training samples (defects drawn on good images) with their
 *             exact masks
 *   bank      coreset memory bank over the chosen good images' features
 *   train     the decoder on synthetic samples (SNARM only)
 *   predict   anomaly maps and image scores for the test images, written
 *             to one maps file (core/maps.h)
 *   metrics   P-AP / PRO / P-AUROC / I-AUROC from that maps file
 *
 * A pipeline holds the configuration, the backbone (opened on first use) and
 * the folder of the feature cache. Each stage writes its output atomically
 * and skips work whose output already exists and validates.
 */
#ifndef SNARM_PIPELINE_H
#define SNARM_PIPELINE_H

#include <stdint.h>

#include "config.h"

struct ds_dataset;
struct ds_class;
struct bank;
struct store_meta;

struct pipeline;

/* cache_dir holds the feature stores (shared across units and runs). */
int pipeline_open(const struct sn_config *cfg, const char *cache_dir,
                  struct pipeline **out);
void pipeline_free(struct pipeline *p);
const struct sn_config *pipeline_config(const struct pipeline *p);
/* The backbone's one-line description (opens it if needed). */
int pipeline_backbone_label(struct pipeline *p, const char **label);

/* One image of a unit: its class and its sample within that class. */
struct pipe_item {
    const struct ds_class *cls;
    int index;  /* into cls->train or cls->test */
    int split;  /* PIPE_TRAIN or PIPE_TEST */
};
#define PIPE_TRAIN 0
#define PIPE_TEST 1

/* Extract (or find cached) the features of a whole split of a class and
 * write the store's path into path. */
int pipeline_extract(struct pipeline *p, const struct ds_dataset *ds,
                     const struct ds_class *c, int split, char *path, size_t cap);

/* Synthetic training samples of the chosen train images of a class: a
 * feature store and a mask file (n x crop x crop uint8), cached by seed and
 * synthesis settings. */
int pipeline_extract_synth(struct pipeline *p, const struct ds_dataset *ds,
                           const struct ds_class *c, const int *train_idx, int n,
                           uint64_t seed, char *feat_path, char *mask_path, size_t cap);

/* Read a synthetic-sample mask file written by pipeline_extract_synth. */
int pipeline_load_masks(const char *path, int n, int side, uint8_t *out);

/* Load the features of items (all from stores of this pipeline) into one
 * array (n x M x d), allocated with sn_malloc. */
int pipeline_load_features(struct pipeline *p, const struct ds_dataset *ds,
                           const struct pipe_item *items, int n, float **feats);

/* The coreset bank over the features of items; saved to path if given. */
int pipeline_bank(struct pipeline *p, const struct ds_dataset *ds,
                  const struct pipe_item *items, int n, uint64_t seed, const char *path,
                  struct bank *out);

/* The store attributes this pipeline's features must carry. */
int pipeline_store_meta(struct pipeline *p, const char *dataset, const char *cls,
                        const char *split, struct store_meta *m);

#endif
