/*
 * config.h - the experiment configuration and every default of the method.
 *
 * An experiment is a YAML file of sections (run, data, backbone, features,
 * bank, matching, decoder, train, predict, sweep), each a mapping of keys to
 * scalars or lists. Every key, its type, its range and its default (the
 * values of the SNARM specification) is declared once, in the table in
 * config.c; nothing else in the framework holds a default.
 *
 * An unknown key, a value of the wrong type or out of range is a user error
 * naming the file, line and key. config_print() writes the fully resolved
 * configuration back as YAML, which is also what runs store with their
 * outputs.
 *
 * A sweep may add a grid: a mapping from "section.key" to a list of values;
 * the sweep expands the Cartesian product and applies each point with
 * config_set().
 */
#ifndef SNARM_CONFIG_H
#define SNARM_CONFIG_H

#include <stdio.h>

#define CFG_STR 512
#define CFG_LIST 64
#define CFG_ITEM 256

struct cfg_strlist {
    int n;
    char v[CFG_LIST][CFG_ITEM];
};

struct cfg_intlist {
    int n;
    int v[CFG_LIST];
};

/* One grid axis: a key and the values (as YAML scalars) it takes. */
struct cfg_axis {
    char key[96];
    struct cfg_strlist values;
};

/* At least the number of keys in core/config.c's table. */
#define CFG_MAX_KEYS 96

struct sn_config {
    char source[CFG_STR]; /* the file it was read from, or "(defaults)" */
    /* The line of the file each key was set on (0: not set by the file), so
     * that checks across keys can name a line too. */
    int key_line[CFG_MAX_KEYS];

    struct {
        char name[CFG_STR];
        char out_dir[CFG_STR];
        long seed;
        int threads; /* 0: all cores */
        char log[16];
    } run;

    struct {
        struct cfg_strlist roots;   /* dataset roots (MVTec, 3D-AD, VisA layouts) */
        struct cfg_strlist classes; /* empty: every class found */
        char format[16];            /* auto, mvtec, mvtec3d, visa */
        char mask_rule[16];         /* bilinear_half (authors) or nearest */
        int resize;                 /* shorter side before the centre crop */
        int crop;                   /* network input size */
    } data;

    struct {
        char arch[48];     /* dinov2_vitb14_reg, vit_tiny_patch16, resnet18, ... */
        char weights[CFG_STR];
        char weights_missing[16]; /* error or random (seeded, labelled) */
        struct cfg_intlist layers; /* block indices fused by Eq. 1 */
        int groups;                /* consecutive groups averaged (2) */
        double interpolate_offset; /* DINOv2 position-embedding offset */
    } backbone;

    struct {
        int grid;     /* feature grid side (49) */
        int pool_dim; /* first-stage channel pooling (1024) */
        int dim;      /* d (512) */
        int batch;    /* images per extraction batch */
    } features;

    struct {
        long coreset;  /* T: kept bank vectors */
        int proj_dim;  /* random projection for coreset distances (128) */
        int knn_k;     /* neighbours averaged into the reference (3) */
    } bank;

    struct {
        double self_ref_percent; /* p: trusted cells (75) */
        int hybrid;              /* intra matching on (ablation switch) */
        int navigate;            /* Mamba visits only suspicious cells */
        int residual_pow2;       /* keep the theta = 2 residual term */
    } matching;

    struct {
        int embed;  /* e (128) */
        int blocks; /* SMBs per branch (2) */
        int d_state;
        int d_conv;
        int expand;
        double dropout;
        struct cfg_intlist dilations; /* one branch each: 3 6 12 24 */
        int scans;                    /* 4 directions */
        int multiview;                /* off: one branch, one scan, one head */
    } decoder;

    struct {
        long steps;
        int batch;
        double lr;
        double weight_decay;
        int cycle; /* K: steps per active branch */
        int cyclic; /* off: every branch trains at every step */
        double jitter;
        double nav_alpha, nav_gamma;
        double head_alpha, head_gamma;
        int checkpoint_every;
        int log_every;
        int synth_per_image;
        double clean_fraction;
        double opacity_min, opacity_max;
        struct cfg_strlist object_classes; /* restrict defects to foreground */
    } train;

    struct {
        double smooth_sigma;
        int score_pool;
        int score_stride;
        char maps_dtype[16]; /* float32 or float16 */
    } predict;

    struct {
        struct cfg_strlist settings; /* single, multi, cross, fewshot */
        struct cfg_strlist methods;  /* snarm, patchcore */
        struct cfg_intlist seeds;
        int fewshot_k;
        int group_size; /* ranks per data-parallel training group */
        int n_axes;
        struct cfg_axis axes[8];
    } sweep;
};

/* Fill with every default. */
void config_defaults(struct sn_config *c);
/* Read a YAML file over the defaults. Returns SN_OK or SN_EUSER. */
int config_load(struct sn_config *c, const char *path);
/* config_load without the checks across keys, for a caller that applies
 * overrides first and then calls config_validate(). */
int config_read(struct sn_config *c, const char *path);
/* Parse YAML text (path is used in messages only). */
int config_load_string(struct sn_config *c, const char *text, const char *path);
/* Set "section.key" from a YAML scalar or flow list ("[1, 2]"). */
int config_set(struct sn_config *c, const char *key, const char *value);
/* Whether text is one of YAML's words for null (~, null, Null, NULL): no
 * value, which the configuration refuses rather than reading as a string. */
int config_is_null(const char *text);
/* Range and consistency checks across keys. */
int config_validate(const struct sn_config *c);
/* Write the resolved configuration as YAML (without the grid if no_grid). */
void config_print(const struct sn_config *c, FILE *out);
/* The same into a newly allocated string (sn_free it). */
char *config_to_string(const struct sn_config *c);
/* Only the given sections, e.g. "data,backbone,features": used to tell
 * whether stored features or banks were made with the same settings. */
char *config_sections_string(const struct sn_config *c, const char *sections);

#endif
