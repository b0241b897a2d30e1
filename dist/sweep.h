/*
 * sweep.h - expanding an experiment into work units, and which images each
 * unit uses (SPEC section 5).
 *
 * An experiment names datasets (data.roots), optionally a subset of their
 * classes (data.classes), settings, methods, seeds and a grid of
 * configuration switches (sweep.axes). sweep_expand() turns it into the
 * Cartesian product, in this order (the last varies fastest):
 *
 *   dataset x setting x (class | held-out class | "all") x method x seed
 *           x grid point
 *
 * single and cross give one unit per class (for cross, the class is the
 * held-out fold); multi and fewshot give one unit per dataset that covers
 * every class ("all"). Each unit has a stable id naming all of it,
 *
 *   mvtec_ad/single/bottle/snarm/seed0/g3
 *
 * which is also its folder under the run's units/ directory. A unit's
 * run.seed is its sweep seed (sweep.seeds; run.seed when that list is
 * empty), so every random choice of the unit follows from it. The grid point
 * g<i> counts through the axes with the first axis varying slowest; g0 is the
 * only point of a sweep without axes. An axis whose key is "switches" sets
 * several keys at once: each of its values reads "key=value; key=value", so
 * that the rows of an ablation table (which are not a Cartesian product) can
 * be listed one by one. Axes may not change what the expansion itself reads
 * (run.*, data.roots, data.classes, data.format, sweep.* other than
 * sweep.fewshot_k).
 *
 * The class set of a dataset is data.classes restricted to the classes the
 * dataset holds (every class when data.classes is empty). It is what
 * "all classes" and "the other classes" mean below, so a sweep restricted to
 * a few classes behaves as if the dataset held only those.
 *
 * Image selection per setting (sweep_unit_images):
 *
 *   setting  bank                      decoder training          evaluated
 *   single   the class's train/good    the class's train/good    the class
 *   multi    train/good of every class the same images           every class
 *   cross    held-out class train/good train/good of the OTHER   held-out
 *                                      classes                   class
 *   fewshot  k train/good images per   the same k per class      every class
 *            class, drawn from the seed
 *
 * The few-shot draw depends only on the seed, the dataset name and the class
 * name (not on the method or grid point), so every method of a seed sees the
 * same shots. A method without a trained decoder (patchcore) gets an empty
 * training list.
 */
#ifndef SNARM_SWEEP_H
#define SNARM_SWEEP_H

#include "config.h"
#include "data/dataset.h"

#define SWEEP_ID_MAX 384
#define SWEEP_GRID_DESC 1024
#define SWEEP_SWITCHES_KEY "switches"

enum sweep_setting { SWEEP_SINGLE, SWEEP_MULTI, SWEEP_CROSS, SWEEP_FEWSHOT };

struct sweep_unit {
    int index;             /* position in the expansion order */
    char id[SWEEP_ID_MAX]; /* stable name; also the unit's folder */
    int dataset;           /* index into the sweep's datasets */
    const struct ds_dataset *ds;
    enum sweep_setting setting;
    int cls;              /* class index in ds; -1 for "all" */
    const int *class_set; /* the dataset's class set (indices into ds) */
    int n_class_set;
    const char *method; /* "snarm" or "patchcore" (in the sweep's base) */
    long seed;
    int grid;      /* grid point */
    int fewshot_k; /* shots per class (fewshot units), else 0 */
};

struct sweep {
    int n_units;
    struct sweep_unit *units;
    int n_datasets;
    const struct ds_dataset *ds; /* the caller's array; not owned */
    int **class_sets;            /* per dataset, indices into ds[i].classes */
    int *n_class_set;
    struct sn_config *base; /* the experiment as loaded */
    int n_grid;
    int *grid_k;                        /* sweep.fewshot_k at each grid point */
    char (*grid_desc)[SWEEP_GRID_DESC]; /* "key=value key=value", "" for none */
};

/* One selected image: a class of the dataset and a sample of its train
 * (bank, train lists) or test (test list) split. */
struct unit_image {
    int cls;
    int sample;
};

struct unit_images {
    int n_bank, n_train, n_test;
    struct unit_image *bank, *train, *test;
};

/* Expand cfg over the opened datasets ds[0..n_ds-1], which must be the
 * datasets of cfg->data.roots in that order and outlive the sweep. A bad
 * setting, method, grid key or value, an unknown class, or a few-shot k
 * larger than a class's training split is a user error naming it. */
int sweep_expand(struct sweep *s, const struct sn_config *cfg,
                 const struct ds_dataset *ds, int n_ds);
void sweep_free(struct sweep *s);

/* The base configuration with grid point g applied. */
void sweep_grid_config(const struct sweep *s, int g, struct sn_config *out);

/* The unit's resolved configuration: its grid point, with run.seed set to
 * the unit's seed and the data and sweep sections narrowed to the unit. */
void sweep_unit_config(const struct sweep *s, const struct sweep_unit *u,
                       struct sn_config *out);

/* The images of the unit per the table above. Lists are ordered by class,
 * then sample index. Release with unit_images_free(). */
int sweep_unit_images(const struct sweep_unit *u, const struct ds_dataset *ds,
                      struct unit_images *out);
void unit_images_free(struct unit_images *im);

/* Write the selection as TSV (role, class, split, index, path relative to
 * the dataset root): how a unit records its few-shot draw. */
char *unit_images_to_tsv(const struct unit_images *im, const struct ds_dataset *ds);

/* The unit with this id, or -1. */
int sweep_find(const struct sweep *s, const char *id);

const char *sweep_setting_name(enum sweep_setting setting);
/* "single", "multi", "cross" or "fewshot"; SN_EUSER otherwise. */
int sweep_setting_parse(const char *name, enum sweep_setting *out);
/* Whether the method trains a decoder (snarm does, patchcore does not). */
int sweep_method_trains(const char *method);

#endif
