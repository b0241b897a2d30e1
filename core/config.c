#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common.h"

static int isalnum_ascii(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9');
}

/* ------------------------------------------------------------------------- */
/* The table of keys: the one place that holds the method's defaults.        */

enum key_type { K_INT, K_LONG, K_DOUBLE, K_BOOL, K_STR, K_ENUM, K_INTS, K_STRS };

struct key_desc {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size; /* for strings: capacity */
    double min, max;
    const char *def;    /* YAML scalar or flow list */
    const char *values; /* K_ENUM: "a|b|c" */
    const char *help;
};

#define OFF(f) offsetof(struct sn_config, f), sizeof(((struct sn_config *)0)->f)
#define BIG 1e18

static const struct key_desc keys[] = {
    /* run */
    {"run", "name", K_STR, OFF(run.name), 0, 0, "snarm", NULL, "name of the run"},
    {"run", "out_dir", K_STR, OFF(run.out_dir), 0, 0, "runs/default", NULL,
     "folder for the run's outputs"},
    {"run", "seed", K_LONG, OFF(run.seed), 0, 4e9, "0", NULL, "base seed"},
    {"run", "threads", K_INT, OFF(run.threads), 0, 1024, "0", NULL,
     "threads per rank (0: all cores)"},
    {"run", "log", K_ENUM, OFF(run.log), 0, 0, "info", "error|warn|info|debug",
     "log level"},

    /* data */
    {"data", "roots", K_STRS, OFF(data.roots), 0, 0, "[]", NULL,
     "dataset roots (MVTec AD, MVTec 3D-AD or VisA layout)"},
    {"data", "classes", K_STRS, OFF(data.classes), 0, 0, "[]", NULL,
     "classes to use (empty: all)"},
    {"data", "format", K_ENUM, OFF(data.format), 0, 0, "auto", "auto|mvtec|mvtec3d|visa",
     "dataset layout"},
    {"data", "mask_rule", K_ENUM, OFF(data.mask_rule), 0, 0, "bilinear_half",
     "bilinear_half|nearest", "how masks are resized (authors: bilinear, >= 0.5)"},
    {"data", "resize", K_INT, OFF(data.resize), 16, 4096, "448", NULL,
     "square resize before the centre crop"},
    {"data", "crop", K_INT, OFF(data.crop), 16, 4096, "392", NULL,
     "centre crop: the network input size"},

    /* backbone */
    {"backbone", "arch", K_ENUM, OFF(backbone.arch), 0, 0, "dinov2_vitb14_reg",
     "dinov2_vits14_reg|dinov2_vitb14_reg|dinov2_vitl14_reg|dinov2_vitg14_reg|"
     "dinov2_vits14|dinov2_vitb14|dinov2_vitl14|dinov2_vitg14|vit_tiny_patch16|resnet18",
     "frozen feature extractor"},
    {"backbone", "weights", K_STR, OFF(backbone.weights), 0, 0, "", NULL,
     "safetensors file of the backbone"},
    {"backbone", "weights_missing", K_ENUM, OFF(backbone.weights_missing), 0, 0, "error",
     "error|random", "absent weights: stop, or use a seeded random init (labelled)"},
    {"backbone", "layers", K_INTS, OFF(backbone.layers), 0, 64, "[1, 2, 3, 4, 5, 6, 7, 8]",
     NULL, "blocks fused by Eq. 1 (0-based)"},
    {"backbone", "groups", K_INT, OFF(backbone.groups), 1, 16, "2", NULL,
     "consecutive layer groups averaged"},
    {"backbone", "interpolate_offset", K_DOUBLE, OFF(backbone.interpolate_offset), 0, 1,
     "0.1", NULL, "DINOv2 position-embedding interpolation offset"},

    /* features */
    {"features", "grid", K_INT, OFF(features.grid), 2, 512, "49", NULL,
     "feature grid side"},
    {"features", "pool_dim", K_INT, OFF(features.pool_dim), 1, 65536, "1024", NULL,
     "first channel-pooling stage"},
    {"features", "dim", K_INT, OFF(features.dim), 2, 65536, "512", NULL,
     "feature dimension d"},
    {"features", "batch", K_INT, OFF(features.batch), 1, 1024, "4", NULL,
     "images per extraction batch"},

    /* bank */
    {"bank", "coreset", K_LONG, OFF(bank.coreset), 1, BIG, "10000", NULL,
     "T: bank vectors kept by the coreset"},
    {"bank", "proj_dim", K_INT, OFF(bank.proj_dim), 1, 65536, "128", NULL,
     "random projection for coreset distances"},
    {"bank", "knn_k", K_INT, OFF(bank.knn_k), 1, 1024, "3", NULL,
     "neighbours averaged into the inter reference"},

    /* matching */
    {"matching", "self_ref_percent", K_DOUBLE, OFF(matching.self_ref_percent), 0.01, 100,
     "75", NULL, "p: share of cells trusted as self references"},
    {"matching", "hybrid", K_BOOL, OFF(matching.hybrid), 0, 1, "true", NULL,
     "intra matching on (off: inter residuals only)"},
    {"matching", "navigate", K_BOOL, OFF(matching.navigate), 0, 1, "true", NULL,
     "Mamba visits only suspicious cells (off: every cell)"},
    {"matching", "residual_pow2", K_BOOL, OFF(matching.residual_pow2), 0, 1, "true", NULL,
     "keep the squared residual term (theta = 2)"},

    /* decoder */
    {"decoder", "embed", K_INT, OFF(decoder.embed), 1, 4096, "128", NULL,
     "e: SNMM embedding width"},
    {"decoder", "blocks", K_INT, OFF(decoder.blocks), 1, 16, "2", NULL,
     "self-navigated Mamba blocks per branch"},
    {"decoder", "d_state", K_INT, OFF(decoder.d_state), 1, 64, "4", NULL,
     "Mamba state size"},
    {"decoder", "d_conv", K_INT, OFF(decoder.d_conv), 1, 16, "4", NULL,
     "Mamba causal conv width"},
    {"decoder", "expand", K_INT, OFF(decoder.expand), 1, 8, "2", NULL,
     "Mamba expansion"},
    {"decoder", "dropout", K_DOUBLE, OFF(decoder.dropout), 0, 0.99, "0.1", NULL,
     "dropout after the SMBs"},
    {"decoder", "dilations", K_INTS, OFF(decoder.dilations), 1, 256, "[3, 6, 12, 24]", NULL,
     "one scale branch per dilation rate"},
    {"decoder", "scans", K_INT, OFF(decoder.scans), 1, 4, "4", NULL,
     "scan directions per branch"},
    {"decoder", "multiview", K_BOOL, OFF(decoder.multiview), 0, 1, "true", NULL,
     "the multi-view decoder (off: one branch, one scan, one head)"},

    /* train */
    {"train", "steps", K_LONG, OFF(train.steps), 0, BIG, "40000", NULL,
     "training steps (the paper: up to 40000)"},
    {"train", "batch", K_INT, OFF(train.batch), 1, 4096, "8", NULL, "samples per step"},
    {"train", "lr", K_DOUBLE, OFF(train.lr), 0, 10, "0.001", NULL, "AdamW learning rate"},
    {"train", "weight_decay", K_DOUBLE, OFF(train.weight_decay), 0, 10, "0.05", NULL,
     "AdamW weight decay"},
    {"train", "cycle", K_INT, OFF(train.cycle), 1, 1000000, "100", NULL,
     "K: steps before switching the active branch"},
    {"train", "cyclic", K_BOOL, OFF(train.cyclic), 0, 1, "true", NULL,
     "one active branch at a time (off: all branches every step)"},
    {"train", "jitter", K_DOUBLE, OFF(train.jitter), 0, 1e6, "30", NULL,
     "lambda of the feature jitter"},
    {"train", "nav_alpha", K_DOUBLE, OFF(train.nav_alpha), 0, 1, "0.5", NULL,
     "navigator focal alpha"},
    {"train", "nav_gamma", K_DOUBLE, OFF(train.nav_gamma), 0, 100, "4", NULL,
     "navigator focal gamma"},
    {"train", "head_alpha", K_DOUBLE, OFF(train.head_alpha), 0, 1, "0.25", NULL,
     "head focal alpha"},
    {"train", "head_gamma", K_DOUBLE, OFF(train.head_gamma), 0, 100, "4", NULL,
     "head focal gamma"},
    {"train", "checkpoint_every", K_INT, OFF(train.checkpoint_every), 1, 100000000, "500",
     NULL, "steps between checkpoints"},
    {"train", "log_every", K_INT, OFF(train.log_every), 1, 100000000, "50", NULL,
     "steps between log lines"},
    {"train", "synth_per_image", K_INT, OFF(train.synth_per_image), 1, 1000, "4", NULL,
     "synthetic samples generated per training image"},
    {"train", "clean_fraction", K_DOUBLE, OFF(train.clean_fraction), 0, 1, "0.25", NULL,
     "share of synthetic samples left defect-free"},
    {"train", "opacity_min", K_DOUBLE, OFF(train.opacity_min), 0, 1, "0.3", NULL,
     "lowest defect opacity"},
    {"train", "opacity_max", K_DOUBLE, OFF(train.opacity_max), 0, 1, "1.0", NULL,
     "highest defect opacity"},
    {"train", "object_classes", K_STRS, OFF(train.object_classes), 0, 0, "[]", NULL,
     "classes whose defects stay on the foreground"},

    /* predict */
    {"predict", "smooth_sigma", K_DOUBLE, OFF(predict.smooth_sigma), 0, 1000, "4", NULL,
     "Gaussian smoothing of the anomaly map (pixels)"},
    {"predict", "score_pool", K_INT, OFF(predict.score_pool), 1, 4096, "16", NULL,
     "average-pool size before the image score max"},
    {"predict", "score_stride", K_INT, OFF(predict.score_stride), 1, 4096, "2", NULL,
     "average-pool stride"},
    {"predict", "maps_dtype", K_ENUM, OFF(predict.maps_dtype), 0, 0, "float32",
     "float32|float16", "stored map precision"},

    /* sweep */
    {"sweep", "settings", K_STRS, OFF(sweep.settings), 0, 0, "[single]", NULL,
     "single, multi, cross, fewshot"},
    {"sweep", "methods", K_STRS, OFF(sweep.methods), 0, 0, "[snarm]", NULL,
     "snarm, patchcore"},
    {"sweep", "seeds", K_INTS, OFF(sweep.seeds), 0, 2147483647, "[0]", NULL,
     "seeds, one unit each"},
    {"sweep", "fewshot_k", K_INT, OFF(sweep.fewshot_k), 1, 100000, "4", NULL,
     "good images per class in few-shot"},
    {"sweep", "group_size", K_INT, OFF(sweep.group_size), 1, 4096, "1", NULL,
     "ranks training one unit together"},
};

static const char *list_words[][8] = {
    /* allowed values of string lists that are really enums */
    {"sweep.settings", "single", "multi", "cross", "fewshot", NULL},
    {"sweep.methods", "snarm", "patchcore", NULL},
};

/* ------------------------------------------------------------------------- */
/* Setting one key from text.                                                 */

_Static_assert(SN_ARRAY_LEN(keys) <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

static const struct key_desc *key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < SN_ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static int parse_number(const char *s, double *out, int integer)
{
    char *end;
    errno = 0;
    double v = integer ? (double)strtoll(s, &end, 10) : strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int check_range(const struct key_desc *k, double v, const char *where)
{
    if (v < k->min || v > k->max)
        return sn_error("%s: %s.%s = %g is out of range [%g, %g]", where, k->section,
                        k->name, v, k->min, k->max);
    return SN_OK;
}

static int set_scalar(struct sn_config *c, const struct key_desc *k, const char *s,
                      const char *where)
{
    char *field = (char *)c + k->offset;
    double v;
    switch (k->type) {
    case K_INT:
    case K_LONG:
        if (parse_number(s, &v, 1))
            return sn_error("%s: %s.%s expects an integer, got '%s'", where, k->section,
                            k->name, s);
        if (check_range(k, v, where)) return SN_EUSER;
        if (k->type == K_INT) *(int *)field = (int)v;
        else *(long *)field = (long)v;
        return SN_OK;
    case K_DOUBLE:
        if (parse_number(s, &v, 0))
            return sn_error("%s: %s.%s expects a number, got '%s'", where, k->section,
                            k->name, s);
        if (check_range(k, v, where)) return SN_EUSER;
        *(double *)field = v;
        return SN_OK;
    case K_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
            *(int *)field = 1;
        } else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
            *(int *)field = 0;
        } else {
            return sn_error("%s: %s.%s expects true or false, got '%s'", where, k->section,
                            k->name, s);
        }
        return SN_OK;
    case K_ENUM: {
        size_t n = strlen(s);
        const char *p = k->values;
        while (p && *p) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (len == n && !strncmp(p, s, n)) {
                snprintf(field, k->size, "%s", s);
                return SN_OK;
            }
            p = bar ? bar + 1 : NULL;
        }
        return sn_error("%s: %s.%s must be one of %s, got '%s'", where, k->section,
                        k->name, k->values, s);
    }
    case K_STR:
        if (strlen(s) >= k->size)
            return sn_error("%s: %s.%s is too long (%zu characters at most)", where,
                            k->section, k->name, k->size - 1);
        snprintf(field, k->size, "%s", s);
        return SN_OK;
    default:
        return sn_error("%s: %s.%s expects a list, got '%s'", where, k->section, k->name,
                        s);
    }
}

static int check_list_word(const struct key_desc *k, const char *s, const char *where)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->section, k->name);
    for (size_t i = 0; i < SN_ARRAY_LEN(list_words); i++) {
        if (strcmp(list_words[i][0], full)) continue;
        for (int j = 1; list_words[i][j]; j++)
            if (!strcmp(list_words[i][j], s)) return SN_OK;
        return sn_error("%s: %s has an unknown value '%s'", where, full, s);
    }
    return SN_OK;
}

/* Append one item to a list key. */
static int list_append(struct sn_config *c, const struct key_desc *k, const char *s,
                       const char *where)
{
    char *field = (char *)c + k->offset;
    if (k->type == K_INTS) {
        struct cfg_intlist *l = (struct cfg_intlist *)field;
        double v;
        if (parse_number(s, &v, 1))
            return sn_error("%s: %s.%s expects integers, got '%s'", where, k->section,
                            k->name, s);
        if (check_range(k, v, where)) return SN_EUSER;
        if (l->n == CFG_LIST)
            return sn_error("%s: %s.%s has more than %d items", where, k->section,
                            k->name, CFG_LIST);
        l->v[l->n++] = (int)v;
        return SN_OK;
    }
    if (k->type != K_STRS)
        return sn_error("%s: %s.%s expects a single value, got a list", where, k->section,
                        k->name);
    struct cfg_strlist *l = (struct cfg_strlist *)field;
    if (l->n == CFG_LIST)
        return sn_error("%s: %s.%s has more than %d items", where, k->section, k->name,
                        CFG_LIST);
    if (strlen(s) >= CFG_ITEM)
        return sn_error("%s: an item of %s.%s is too long", where, k->section, k->name);
    if (check_list_word(k, s, where)) return SN_EUSER;
    snprintf(l->v[l->n++], CFG_ITEM, "%s", s);
    return SN_OK;
}

static void list_clear(struct sn_config *c, const struct key_desc *k)
{
    char *field = (char *)c + k->offset;
    if (k->type == K_INTS) ((struct cfg_intlist *)field)->n = 0;
    if (k->type == K_STRS) ((struct cfg_strlist *)field)->n = 0;
}

/* Split "section.key" and find its descriptor. */
static int key_lookup(const char *dotted, const struct key_desc **out, const char *where)
{
    char sec[64];
    const char *dot = strchr(dotted, '.');
    if (!dot || (size_t)(dot - dotted) >= sizeof sec)
        return sn_error("%s: '%s' is not a key of the form section.key", where, dotted);
    memcpy(sec, dotted, (size_t)(dot - dotted));
    sec[dot - dotted] = 0;
    *out = key_find(sec, dot + 1);
    if (!*out) return sn_error("%s: unknown key '%s'", where, dotted);
    return SN_OK;
}

/* Parse a flow list "[a, b, c]" from text (used by defaults and config_set). */
static int set_flow_list(struct sn_config *c, const struct key_desc *k, const char *text,
                         const char *where)
{
    char buf[CFG_LIST * CFG_ITEM];
    snprintf(buf, sizeof buf, "%s", text);
    char *p = buf;
    while (*p == ' ') p++;
    if (*p != '[') return list_append(c, k, p, where);
    char *end = strrchr(p, ']');
    if (!end) return sn_error("%s: %s.%s: unterminated list '%s'", where, k->section,
                              k->name, text);
    *end = 0;
    list_clear(c, k);
    for (char *tok = strtok(p + 1, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        char *t = tok + strlen(tok);
        while (t > tok && t[-1] == ' ') *--t = 0;
        if (!*tok) continue;
        if (list_append(c, k, tok, where)) return SN_EUSER;
    }
    return SN_OK;
}

static int set_text(struct sn_config *c, const struct key_desc *k, const char *value,
                    const char *where)
{
    if (k->type == K_INTS || k->type == K_STRS) {
        list_clear(c, k);
        return set_flow_list(c, k, value, where);
    }
    return set_scalar(c, k, value, where);
}

int config_is_null(const char *text)
{
    return !strcmp(text, "~") || !strcmp(text, "null") || !strcmp(text, "Null") ||
           !strcmp(text, "NULL");
}

int config_set(struct sn_config *c, const char *key, const char *value)
{
    const struct key_desc *k;
    if (key_lookup(key, &k, "setting")) return SN_EUSER;
    if (set_text(c, k, value, "setting")) return SN_EUSER;
    c->key_line[k - keys] = -1; /* no longer the file's value */
    return SN_OK;
}

void config_defaults(struct sn_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->source, sizeof c->source, "(defaults)");
    for (size_t i = 0; i < SN_ARRAY_LEN(keys); i++)
        if (set_text(c, &keys[i], keys[i].def, "defaults"))
            sn_fatal("bad built-in default: %s", sn_last_error());
}

/* ------------------------------------------------------------------------- */
/* YAML: a mapping of sections, each a mapping of keys to scalars or lists.   */

struct yctx {
    struct sn_config *c;
    yaml_document_t *doc;
    const char *path;
};

static const char *where_at(const struct yctx *y, yaml_node_t *n, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s:%lu", y->path, (unsigned long)n->start_mark.line + 1);
    return buf;
}

static int load_key(struct yctx *y, const struct key_desc *k, yaml_node_t *v)
{
    char where[CFG_STR + 64];
    where_at(y, v, where, sizeof where);
    if (v->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)v->data.scalar.value;
        if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && config_is_null(s))
            return sn_error("%s: %s.%s is null; give a value, or leave the key out for "
                            "its default",
                            where, k->section, k->name);
        if (k->type == K_INTS || k->type == K_STRS) {
            list_clear(y->c, k);
            return *s ? list_append(y->c, k, s, where) : SN_OK;
        }
        return set_scalar(y->c, k, s, where);
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return sn_error("%s: %s.%s expects a value or a list, got a mapping", where,
                        k->section, k->name);
    if (k->type != K_INTS && k->type != K_STRS)
        return sn_error("%s: %s.%s expects a single value, got a list", where, k->section,
                        k->name);
    list_clear(y->c, k);
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         it < v->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(y->doc, *it);
        if (e->type != YAML_SCALAR_NODE)
            return sn_error("%s: %s.%s: list items must be plain values",
                            where_at(y, e, where, sizeof where), k->section, k->name);
        if (list_append(y->c, k, (const char *)e->data.scalar.value,
                        where_at(y, e, where, sizeof where)))
            return SN_EUSER;
    }
    return SN_OK;
}

/* A "switches" grid value sets several keys at once: "key=value; key=value"
 * (the rows of an ablation table, which are not a Cartesian product). */
static int switches_check(struct sn_config *c, const char *text, const char *where)
{
    char buf[CFG_ITEM];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        char *eq = strchr(tok, '=');
        if (!eq) return sn_error("%s: switches item '%s' is not key=value", where, tok);
        *eq = 0;
        char *t = eq;
        while (t > tok && t[-1] == ' ') *--t = 0;
        const struct key_desc *k;
        if (key_lookup(tok, &k, where) || set_text(c, k, eq + 1, where)) return SN_EUSER;
    }
    return SN_OK;
}

/* A grid value as text: a scalar, or a flat list written as "[a, b]". */
static int config_grid_value_text(yaml_document_t *doc, yaml_node_t *n, char *out,
                                  size_t cap)
{
    if (n->type == YAML_SCALAR_NODE) {
        snprintf(out, cap, "%s", (const char *)n->data.scalar.value);
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE) return -1;
    size_t used = (size_t)snprintf(out, cap, "[");
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         it < n->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(doc, *it);
        if (e->type != YAML_SCALAR_NODE || used >= cap) return -1;
        used += (size_t)snprintf(out + used, cap - used, "%s%s",
                                 it == n->data.sequence.items.start ? "" : ", ",
                                 (const char *)e->data.scalar.value);
    }
    if (used + 2 > cap) return -1;
    snprintf(out + used, cap - used, "]");
    return 0;
}

/* Whether a "switches" value sets key. */
static int switches_set(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        if (!strncmp(p, key, n)) {
            const char *q = p + n;
            while (*q == ' ')
                q++;
            if (*q == '=') return 1;
        }
        const char *next = strchr(p, ';');
        if (!next) break;
        p = next;
    }
    return 0;
}

/* A key that is an axis of its own and also set by switches: a grid point's
 * label would then say one value while the unit runs with another. */
static int grid_conflicts(const struct sn_config *c, const char *where)
{
    const struct cfg_axis *ax = c->sweep.axes;
    for (int a = 0; a < c->sweep.n_axes; a++) {
        if (strcmp(ax[a].key, "switches")) continue;
        for (int b = 0; b < c->sweep.n_axes; b++) {
            if (!strcmp(ax[b].key, "switches")) continue;
            for (int i = 0; i < ax[a].values.n; i++)
                if (switches_set(ax[a].values.v[i], ax[b].key))
                    return sn_error("%s: sweep.grid sets %s both as an axis and in "
                                    "switches ('%s'); give it one way",
                                    where, ax[b].key, ax[a].values.v[i]);
        }
    }
    return SN_OK;
}

/* sweep.grid: a mapping from "section.key" to a list of values. */
static int load_grid(struct yctx *y, yaml_node_t *g)
{
    char where[CFG_STR + 64];
    if (g->type != YAML_MAPPING_NODE)
        return sn_error("%s: sweep.grid must map keys to lists of values",
                        where_at(y, g, where, sizeof where));
    y->c->sweep.n_axes = 0;
    for (yaml_node_pair_t *p = g->data.mapping.pairs.start; p < g->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *key = (const char *)kn->data.scalar.value;
        const struct key_desc *k = NULL;
        where_at(y, kn, where, sizeof where);
        if (strcmp(key, "switches") && key_lookup(key, &k, where)) return SN_EUSER;
        if (y->c->sweep.n_axes == (int)SN_ARRAY_LEN(y->c->sweep.axes))
            return sn_error("%s: sweep.grid has more than %zu axes", where,
                            SN_ARRAY_LEN(y->c->sweep.axes));
        if (vn->type != YAML_SEQUENCE_NODE || vn->data.sequence.items.top ==
                                                   vn->data.sequence.items.start)
            return sn_error("%s: sweep.grid.%s must be a non-empty list", where, key);
        struct cfg_axis *ax = &y->c->sweep.axes[y->c->sweep.n_axes++];
        snprintf(ax->key, sizeof ax->key, "%s", key);
        ax->values.n = 0;
        for (yaml_node_item_t *it = vn->data.sequence.items.start;
             it < vn->data.sequence.items.top; it++) {
            if (ax->values.n == CFG_LIST)
                return sn_error("%s: sweep.grid.%s has too many values", where, key);
            char *dst = ax->values.v[ax->values.n++];
            if (config_grid_value_text(y->doc, yaml_document_get_node(y->doc, *it), dst,
                                       CFG_ITEM))
                return sn_error("%s: sweep.grid.%s: values must be scalars or flat lists",
                                where, key);
            /* Check the value now, on a scratch copy, so errors name the line. */
            struct sn_config *tmp = sn_malloc(sizeof *tmp);
            *tmp = *y->c;
            int rc = k ? set_text(tmp, k, dst, where) : switches_check(tmp, dst, where);
            sn_free(tmp);
            if (rc) return rc;
        }
    }
    return grid_conflicts(y->c, where_at(y, g, where, sizeof where));
}

/* Whether the key of pair p already appeared earlier in mapping m: YAML
 * leaves duplicates to the application, and a silent "last one wins" would
 * hide a mistake. */
static int pair_repeats(yaml_document_t *doc, yaml_node_t *m, yaml_node_pair_t *p)
{
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    if (k->type != YAML_SCALAR_NODE) return 0;
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *e = yaml_document_get_node(doc, q->key);
        if (e->type == YAML_SCALAR_NODE &&
            !strcmp((const char *)e->data.scalar.value, (const char *)k->data.scalar.value))
            return 1;
    }
    return 0;
}

static int load_section(struct yctx *y, const char *sec, yaml_node_t *m)
{
    char where[CFG_STR + 64];
    if (m->type != YAML_MAPPING_NODE)
        return sn_error("%s: section '%s' must be a mapping of keys to values",
                        where_at(y, m, where, sizeof where), sec);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        where_at(y, kn, where, sizeof where);
        if (kn->type != YAML_SCALAR_NODE)
            return sn_error("%s: keys of section '%s' must be plain names", where, sec);
        const char *name = (const char *)kn->data.scalar.value;
        if (pair_repeats(y->doc, m, p))
            return sn_error("%s: key '%s.%s' is given twice", where, sec, name);
        if (!strcmp(sec, "sweep") && !strcmp(name, "grid")) {
            if (load_grid(y, vn)) return SN_EUSER;
            continue;
        }
        const struct key_desc *k = key_find(sec, name);
        if (!k) return sn_error("%s: unknown key '%s.%s'", where, sec, name);
        if (load_key(y, k, vn)) return SN_EUSER;
        y->c->key_line[k - keys] = (int)kn->start_mark.line + 1;
    }
    return SN_OK;
}

static int section_known(const char *sec)
{
    for (size_t i = 0; i < SN_ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].section, sec)) return 1;
    return 0;
}

static int load_document(struct yctx *y)
{
    char where[CFG_STR + 64];
    yaml_node_t *root = yaml_document_get_root_node(y->doc);
    if (!root) return SN_OK; /* an empty file: all defaults */
    if (root->type != YAML_MAPPING_NODE)
        return sn_error("%s: the top level must be a mapping of sections",
                        where_at(y, root, where, sizeof where));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        where_at(y, kn, where, sizeof where);
        if (kn->type != YAML_SCALAR_NODE)
            return sn_error("%s: section names must be plain names", where);
        const char *sec = (const char *)kn->data.scalar.value;
        if (pair_repeats(y->doc, root, p))
            return sn_error("%s: section '%s' is given twice", where, sec);
        if (!section_known(sec))
            return sn_error("%s: unknown section '%s' (known: run, data, backbone, "
                            "features, bank, matching, decoder, train, predict, sweep)",
                            where, sec);
        if (load_section(y, sec, yaml_document_get_node(y->doc, p->value)))
            return SN_EUSER;
    }
    return SN_OK;
}

static int load_string(struct sn_config *c, const char *text, const char *path)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) sn_fatal("libyaml: cannot create a parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = sn_error("%s:%lu: YAML syntax error: %s", path,
                          (unsigned long)parser.problem_mark.line + 1,
                          parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        return rc;
    }
    struct yctx y = {c, &doc, path};
    snprintf(c->source, sizeof c->source, "%s", path);
    int rc = load_document(&y);
    yaml_document_delete(&doc);

    /* a second document ("---") would otherwise be ignored without a word */
    if (rc == SN_OK && yaml_parser_load(&parser, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root)
            rc = sn_error("%s:%lu: a second YAML document; an experiment file holds one",
                          path, (unsigned long)root->start_mark.line + 1);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return rc;
}

int config_load_string(struct sn_config *c, const char *text, const char *path)
{
    int rc = load_string(c, text, path);
    return rc == SN_OK ? config_validate(c) : rc;
}

int config_read(struct sn_config *c, const char *path)
{
    size_t n;
    char *text = sn_read_file(path, &n);
    if (!text) return SN_EUSER;
    if (strlen(text) != n) {
        sn_free(text);
        return sn_error("%s: not a text file", path);
    }
    int rc = load_string(c, text, path);
    sn_free(text);
    return rc;
}

int config_load(struct sn_config *c, const char *path)
{
    int rc = config_read(c, path);
    return rc == SN_OK ? config_validate(c) : rc;
}

/* "file:line" of the key "section.name" where the file set it, "--set" where
 * an override did, else "file". */
static const char *key_where(const struct sn_config *c, const char *dotted, char *buf,
                             size_t cap)
{
    char sec[64];
    size_t n = strcspn(dotted, ".");
    snprintf(sec, sizeof sec, "%.*s", (int)n, dotted);
    const struct key_desc *k = key_find(sec, dotted + n + (dotted[n] != 0));
    int line = k ? c->key_line[k - keys] : 0;
    if (line > 0) snprintf(buf, cap, "%s:%d", c->source, line);
    else if (line < 0) snprintf(buf, cap, "--set %s", dotted);
    else snprintf(buf, cap, "%s", c->source);
    return buf;
}

/* The first item a list repeats, or -1: a sweep over a repeated seed,
 * method or setting would run the same unit twice and count it twice. */
static int str_repeat(const struct cfg_strlist *l)
{
    for (int i = 1; i < l->n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(l->v[i], l->v[j])) return i;
    return -1;
}

static int int_repeat(const struct cfg_intlist *l)
{
    for (int i = 1; i < l->n; i++)
        for (int j = 0; j < i; j++)
            if (l->v[i] == l->v[j]) return i;
    return -1;
}

int config_validate(const struct sn_config *c)
{
    char w[CFG_STR + 32];
#define AT(key) key_where(c, key, w, sizeof w)
    if (!c->run.out_dir[0])
        return sn_error("%s: run.out_dir is empty", AT("run.out_dir"));
    if (!c->run.name[0]) return sn_error("%s: run.name is empty", AT("run.name"));
    if (c->data.crop > c->data.resize)
        return sn_error("%s: data.crop (%d) is larger than data.resize (%d)", AT("data.crop"),
                        c->data.crop, c->data.resize);
    if (c->backbone.layers.n == 0)
        return sn_error("%s: backbone.layers is empty", AT("backbone.layers"));
    if (c->backbone.layers.n % c->backbone.groups)
        return sn_error("%s: backbone.layers (%d blocks) cannot be split into %d equal "
                        "groups", AT("backbone.groups"), c->backbone.layers.n,
                        c->backbone.groups);
    if (c->bank.knn_k > c->bank.coreset)
        return sn_error("%s: bank.knn_k (%d) is larger than bank.coreset (%ld), so no "
                        "bank could hold that many neighbours",
                        AT("bank.knn_k"), c->bank.knn_k, c->bank.coreset);
    if (c->decoder.dilations.n == 0)
        return sn_error("%s: decoder.dilations is empty", AT("decoder.dilations"));
    if (c->train.opacity_min > c->train.opacity_max)
        return sn_error("%s: train.opacity_min is above train.opacity_max",
                        AT("train.opacity_min"));
    if (c->sweep.settings.n == 0)
        return sn_error("%s: sweep.settings is empty", AT("sweep.settings"));
    if (c->sweep.methods.n == 0)
        return sn_error("%s: sweep.methods is empty", AT("sweep.methods"));
    if (c->sweep.seeds.n == 0) return sn_error("%s: sweep.seeds is empty", AT("sweep.seeds"));
    const struct {
        const char *key;
        const struct cfg_strlist *l;
    } lists[] = {{"sweep.settings", &c->sweep.settings},
                 {"sweep.methods", &c->sweep.methods},
                 {"data.roots", &c->data.roots}};
    for (size_t i = 0; i < SN_ARRAY_LEN(lists); i++) {
        int r = str_repeat(lists[i].l);
        if (r >= 0)
            return sn_error("%s: %s lists '%s' twice", AT(lists[i].key), lists[i].key,
                            lists[i].l->v[r]);
    }
    int r = int_repeat(&c->sweep.seeds);
    if (r >= 0)
        return sn_error("%s: sweep.seeds lists %d twice", AT("sweep.seeds"),
                        c->sweep.seeds.v[r]);
#undef AT
    return SN_OK;
}

/* ------------------------------------------------------------------------- */
/* Printing the resolved configuration.                                       */

/* Quote a string for YAML output when it is not a plain safe word. */
static void print_str(FILE *out, const char *s)
{
    int plain = *s != 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum_ascii(*p) || strchr("._/-+", *p))) plain = 0;
    if (plain && strcmp(s, "true") && strcmp(s, "false") && strcmp(s, "null")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

static void print_value(FILE *out, const struct sn_config *c, const struct key_desc *k)
{
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case K_INT: fprintf(out, "%d", *(const int *)field); break;
    case K_LONG: fprintf(out, "%ld", *(const long *)field); break;
    case K_DOUBLE: fprintf(out, "%.17g", *(const double *)field); break;
    case K_BOOL: fputs(*(const int *)field ? "true" : "false", out); break;
    case K_STR:
    case K_ENUM: print_str(out, field); break;
    case K_INTS: {
        const struct cfg_intlist *l = (const struct cfg_intlist *)field;
        fputc('[', out);
        for (int i = 0; i < l->n; i++) fprintf(out, "%s%d", i ? ", " : "", l->v[i]);
        fputc(']', out);
        break;
    }
    case K_STRS: {
        const struct cfg_strlist *l = (const struct cfg_strlist *)field;
        fputc('[', out);
        for (int i = 0; i < l->n; i++) {
            if (i) fputs(", ", out);
            print_str(out, l->v[i]);
        }
        fputc(']', out);
        break;
    }
    }
}

static int in_list(const char *sections, const char *sec)
{
    if (!sections) return 1;
    size_t n = strlen(sec);
    for (const char *p = sections; (p = strstr(p, sec)); p += n)
        if ((p == sections || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

/* A grid value inside a flow list: a flat list "[a, b]" as it is, anything
 * else as a scalar, quoted unless it is a plain safe word, so that the
 * printed configuration reads back as the same grid. */
static void print_grid_value(FILE *out, const char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '[' && v[n - 1] == ']' && !strpbrk(v, "#\"'{}:;=")) fputs(v, out);
    else print_str(out, v);
}

static void print_sections(const struct sn_config *c, FILE *out, const char *sections,
                           int with_grid)
{
    const char *cur = "";
    for (size_t i = 0; i < SN_ARRAY_LEN(keys); i++) {
        const struct key_desc *k = &keys[i];
        if (!in_list(sections, k->section)) continue;
        if (strcmp(cur, k->section)) {
            fprintf(out, "%s:\n", k->section);
            cur = k->section;
        }
        fprintf(out, "  %s: ", k->name);
        print_value(out, c, k);
        fputc('\n', out);
    }
    if (!with_grid || !in_list(sections, "sweep") || c->sweep.n_axes == 0) return;
    fprintf(out, "  grid:\n");
    for (int a = 0; a < c->sweep.n_axes; a++) {
        fprintf(out, "    %s: [", c->sweep.axes[a].key);
        for (int i = 0; i < c->sweep.axes[a].values.n; i++) {
            fputs(i ? ", " : "", out);
            print_grid_value(out, c->sweep.axes[a].values.v[i]);
        }
        fprintf(out, "]\n");
    }
}

void config_print(const struct sn_config *c, FILE *out)
{
    fprintf(out, "# snarm %s configuration resolved from %s\n", sn_version(), c->source);
    print_sections(c, out, NULL, 1);
}

static char *print_to_string(const struct sn_config *c, const char *sections, int header)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) sn_fatal("open_memstream failed");
    if (header) config_print(c, f);
    else print_sections(c, f, sections, 0);
    fclose(f);
    char *out = sn_strdup(buf);
    free(buf);
    return out;
}

char *config_to_string(const struct sn_config *c)
{
    return print_to_string(c, NULL, 1);
}

char *config_sections_string(const struct sn_config *c, const char *sections)
{
    return print_to_string(c, sections, 0);
}
