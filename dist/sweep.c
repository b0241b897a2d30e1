/*
 * sweep.c - expansion of an experiment into units and the per-setting image
 * selection of SPEC section 5.
 */
#include "sweep.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"

/* Past this many units a sweep is almost certainly a mistyped grid. */
#define SWEEP_MAX_UNITS 1000000L

static const char *setting_names[] = {"single", "multi", "cross", "fewshot"};

const char *sweep_setting_name(enum sweep_setting setting)
{
    SN_ASSERT((unsigned)setting < SN_ARRAY_LEN(setting_names));
    return setting_names[setting];
}

int sweep_setting_parse(const char *name, enum sweep_setting *out)
{
    for (size_t i = 0; i < SN_ARRAY_LEN(setting_names); i++) {
        if (strcmp(name, setting_names[i]) == 0) {
            *out = (enum sweep_setting)i;
            return SN_OK;
        }
    }
    return sn_error("sweep.settings: unknown setting '%s' (expected single, multi, "
                    "cross or fewshot)",
                    name);
}

int sweep_method_trains(const char *method)
{
    return strcmp(method, "patchcore") != 0;
}

static int method_check(const char *method)
{
    if (strcmp(method, "snarm") == 0 || strcmp(method, "patchcore") == 0) return SN_OK;
    return sn_error("sweep.methods: unknown method '%s' (expected snarm or patchcore)",
                    method);
}

/* ---------------------------------------------------------------------------
 * Class sets */

static int class_index(const struct ds_dataset *ds, const char *name)
{
    for (int c = 0; c < ds->n_classes; c++)
        if (strcmp(ds->classes[c].name, name) == 0) return c;
    return -1;
}

/* The dataset's classes named in data.classes (all when the list is empty),
 * in the dataset's own (sorted) order. */
static void class_set_build(struct sweep *s, const struct sn_config *cfg, int d)
{
    const struct ds_dataset *ds = &s->ds[d];
    const struct cfg_strlist *want = &cfg->data.classes;
    int *set = sn_calloc((size_t)SN_MAX(ds->n_classes, 1), sizeof *set);
    int n = 0;
    for (int c = 0; c < ds->n_classes; c++) {
        int keep = want->n == 0;
        for (int i = 0; i < want->n && !keep; i++)
            keep = strcmp(want->v[i], ds->classes[c].name) == 0;
        if (keep) set[n++] = c;
    }
    s->class_sets[d] = set;
    s->n_class_set[d] = n;
}

static int class_sets_build(struct sweep *s, const struct sn_config *cfg)
{
    s->class_sets = sn_calloc((size_t)s->n_datasets, sizeof *s->class_sets);
    s->n_class_set = sn_calloc((size_t)s->n_datasets, sizeof *s->n_class_set);
    for (int d = 0; d < s->n_datasets; d++)
        class_set_build(s, cfg, d);

    /* every named class must exist somewhere */
    for (int i = 0; i < cfg->data.classes.n; i++) {
        int found = 0;
        for (int d = 0; d < s->n_datasets && !found; d++)
            found = class_index(&s->ds[d], cfg->data.classes.v[i]) >= 0;
        if (!found)
            return sn_error("data.classes: class '%s' is in none of the datasets (%s%s)",
                            cfg->data.classes.v[i], s->ds[0].root,
                            s->n_datasets > 1 ? ", ..." : "");
    }
    for (int d = 0; d < s->n_datasets; d++)
        if (s->n_class_set[d] == 0)
            return sn_error("dataset %s: none of data.classes is in it", s->ds[d].root);
    return SN_OK;
}

/* ---------------------------------------------------------------------------
 * Grid */

static int axis_key_allowed(const char *key)
{
    static const char *banned[] = {"data.roots", "data.classes", "data.format"};
    for (size_t i = 0; i < SN_ARRAY_LEN(banned); i++)
        if (strcmp(key, banned[i]) == 0) return 0;
    if (strncmp(key, "run.", 4) == 0) return 0;
    if (strncmp(key, "sweep.", 6) == 0) return strcmp(key, "sweep.fewshot_k") == 0;
    return 1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = 0;
    return s;
}

/* A "switches" value: "key=value; key=value". */
static int switches_apply(struct sn_config *c, const char *value)
{
    char buf[CFG_ITEM];
    snprintf(buf, sizeof buf, "%s", value);
    for (char *save = NULL, *part = strtok_r(buf, ";", &save); part;
         part = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(part, '=');
        if (!eq)
            return sn_error("sweep grid: switches value '%s': '%s' is not key=value",
                            value, trim(part));
        *eq = 0;
        char *key = trim(part), *val = trim(eq + 1);
        if (!axis_key_allowed(key) || strcmp(key, SWEEP_SWITCHES_KEY) == 0)
            return sn_error("sweep grid: switches may not set %s", key);
        if (config_set(c, key, val) != SN_OK)
            return sn_error_prefix("sweep grid: switches value '%s'", value);
    }
    return SN_OK;
}

static int axis_apply(struct sn_config *c, const struct cfg_axis *ax, int v)
{
    const char *value = ax->values.v[v];
    if (strcmp(ax->key, SWEEP_SWITCHES_KEY) == 0) return switches_apply(c, value);
    if (config_set(c, ax->key, value) != SN_OK)
        return sn_error_prefix("sweep grid: %s = %s", ax->key, value);
    return SN_OK;
}

/* Apply grid point g of the base's axes to c and describe it in desc. */
static int grid_point_apply(const struct sn_config *base, int g, struct sn_config *c,
                            char *desc, size_t cap)
{
    int idx[SN_ARRAY_LEN(base->sweep.axes)];
    for (int a = base->sweep.n_axes - 1; a >= 0; a--) {
        idx[a] = g % base->sweep.axes[a].values.n;
        g /= base->sweep.axes[a].values.n;
    }
    if (desc) desc[0] = 0;
    for (int a = 0; a < base->sweep.n_axes; a++) {
        const struct cfg_axis *ax = &base->sweep.axes[a];
        if (axis_apply(c, ax, idx[a]) != SN_OK) return SN_EUSER;
        if (desc) {
            size_t n = strlen(desc);
            snprintf(desc + n, cap - n, "%s%s=%s", n ? " " : "", ax->key,
                     ax->values.v[idx[a]]);
        }
    }
    return SN_OK;
}

static int grid_count(const struct sn_config *cfg, long *n)
{
    *n = 1;
    for (int a = 0; a < cfg->sweep.n_axes; a++) {
        const struct cfg_axis *ax = &cfg->sweep.axes[a];
        if (ax->values.n <= 0) return sn_error("sweep grid: %s has no values", ax->key);
        if (!axis_key_allowed(ax->key))
            return sn_error("sweep grid: %s cannot be a grid axis (the sweep itself "
                            "reads it)",
                            ax->key);
        *n *= ax->values.n;
        if (*n > SWEEP_MAX_UNITS)
            return sn_error("sweep grid: more than %ld grid points", SWEEP_MAX_UNITS);
    }
    return SN_OK;
}

/* Resolve and validate every grid point once, so that a bad value is
 * reported before anything runs. */
static int grid_build(struct sweep *s)
{
    long n;
    if (grid_count(s->base, &n) != SN_OK) return SN_EUSER;
    s->n_grid = (int)n;
    s->grid_k = sn_calloc((size_t)n, sizeof *s->grid_k);
    s->grid_desc = sn_calloc((size_t)n, sizeof *s->grid_desc);
    struct sn_config *c = sn_malloc(sizeof *c);
    int st = SN_OK;
    for (int g = 0; g < s->n_grid && st == SN_OK; g++) {
        *c = *s->base;
        st = grid_point_apply(s->base, g, c, s->grid_desc[g], SWEEP_GRID_DESC);
        if (st == SN_OK && config_validate(c) != SN_OK)
            st = sn_error_prefix("sweep grid point g%d (%s)", g, s->grid_desc[g]);
        s->grid_k[g] = c->sweep.fewshot_k;
    }
    sn_free(c);
    return st;
}

/* ---------------------------------------------------------------------------
 * Units */

static int unit_add(struct sweep *s, long *cap, const struct sweep_unit *proto)
{
    if (s->n_units >= SWEEP_MAX_UNITS)
        return sn_error("the sweep expands to more than %ld units", SWEEP_MAX_UNITS);
    if (s->n_units == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        s->units = sn_realloc(s->units, (size_t)*cap * sizeof *s->units);
    }
    struct sweep_unit *u = &s->units[s->n_units];
    *u = *proto;
    u->index = s->n_units++;
    const char *cls = u->cls >= 0 ? u->ds->classes[u->cls].name : "all";
    int n = snprintf(u->id, sizeof u->id, "%s/%s/%s/%s/seed%ld/g%d", u->ds->name,
                     sweep_setting_name(u->setting), cls, u->method, u->seed, u->grid);
    if (n < 0 || (size_t)n >= sizeof u->id)
        return sn_error("unit id too long (dataset %s, class %s)", u->ds->name, cls);
    return SN_OK;
}

/* The few-shot k of a grid point must fit every class of the set. */
static int fewshot_check(const struct sweep *s, int d, int k)
{
    if (k <= 0) return sn_error("sweep.fewshot_k must be positive, got %d", k);
    for (int i = 0; i < s->n_class_set[d]; i++) {
        const struct ds_class *c = &s->ds[d].classes[s->class_sets[d][i]];
        if (c->n_train < k)
            return sn_error("sweep.fewshot_k = %d but class %s of %s has only %d "
                            "training images",
                            k, c->name, s->ds[d].root, c->n_train);
    }
    return SN_OK;
}

/* method x seed x grid point for one (dataset, setting, class). */
static int units_inner(struct sweep *s, long *cap, struct sweep_unit *p)
{
    const struct sn_config *cfg = s->base;
    long one_seed = cfg->run.seed;
    int n_seeds = cfg->sweep.seeds.n ? cfg->sweep.seeds.n : 1;
    for (int m = 0; m < cfg->sweep.methods.n; m++) {
        p->method = cfg->sweep.methods.v[m];
        for (int i = 0; i < n_seeds; i++) {
            p->seed = cfg->sweep.seeds.n ? cfg->sweep.seeds.v[i] : one_seed;
            for (int g = 0; g < s->n_grid; g++) {
                p->grid = g;
                p->fewshot_k = p->setting == SWEEP_FEWSHOT ? s->grid_k[g] : 0;
                if (p->setting == SWEEP_FEWSHOT &&
                    fewshot_check(s, p->dataset, p->fewshot_k) != SN_OK)
                    return SN_EUSER;
                if (unit_add(s, cap, p) != SN_OK) return SN_EUSER;
            }
        }
    }
    return SN_OK;
}

static int units_build(struct sweep *s)
{
    const struct sn_config *cfg = s->base;
    long cap = 0;
    for (int d = 0; d < s->n_datasets; d++) {
        for (int i = 0; i < cfg->sweep.settings.n; i++) {
            struct sweep_unit p = {.dataset = d, .ds = &s->ds[d]};
            p.class_set = s->class_sets[d];
            p.n_class_set = s->n_class_set[d];
            if (sweep_setting_parse(cfg->sweep.settings.v[i], &p.setting) != SN_OK)
                return SN_EUSER;
            if (p.setting == SWEEP_CROSS && p.n_class_set < 2)
                return sn_error("the cross setting needs at least two classes; %s has "
                                "%d in this sweep",
                                s->ds[d].root, p.n_class_set);

            /* per-class settings give one unit per class, the others one */
            int per_class = p.setting == SWEEP_SINGLE || p.setting == SWEEP_CROSS;
            int n = per_class ? p.n_class_set : 1;
            for (int c = 0; c < n; c++) {
                p.cls = per_class ? p.class_set[c] : -1;
                if (units_inner(s, &cap, &p) != SN_OK) return SN_EUSER;
            }
        }
    }
    return SN_OK;
}

static int lists_check(const struct sn_config *cfg, int n_ds)
{
    if (n_ds != cfg->data.roots.n)
        return sn_error("sweep: %d datasets opened for %d data.roots", n_ds,
                        cfg->data.roots.n);
    if (n_ds == 0) return sn_error("data.roots is empty: the sweep has no dataset");
    if (cfg->sweep.settings.n == 0) return sn_error("sweep.settings is empty");
    if (cfg->sweep.methods.n == 0) return sn_error("sweep.methods is empty");
    for (int m = 0; m < cfg->sweep.methods.n; m++)
        if (method_check(cfg->sweep.methods.v[m]) != SN_OK) return SN_EUSER;
    return SN_OK;
}

/* Unit ids start with the dataset name, so two roots may not share one. */
static int names_check(const struct ds_dataset *ds, int n_ds)
{
    for (int i = 0; i < n_ds; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(ds[i].name, ds[j].name) == 0)
                return sn_error("data.roots: %s and %s have the same name '%s'; unit "
                                "ids need distinct dataset folder names",
                                ds[j].root, ds[i].root, ds[i].name);
    return SN_OK;
}

int sweep_expand(struct sweep *s, const struct sn_config *cfg,
                 const struct ds_dataset *ds, int n_ds)
{
    memset(s, 0, sizeof *s);
    if (lists_check(cfg, n_ds) != SN_OK || names_check(ds, n_ds) != SN_OK)
        return SN_EUSER;
    s->ds = ds;
    s->n_datasets = n_ds;
    s->base = sn_malloc(sizeof *s->base);
    *s->base = *cfg;

    int st = class_sets_build(s, cfg);
    if (st == SN_OK) st = grid_build(s);
    if (st == SN_OK) st = units_build(s);
    if (st != SN_OK) sweep_free(s);
    return st;
}

void sweep_free(struct sweep *s)
{
    for (int d = 0; s->class_sets && d < s->n_datasets; d++)
        sn_free(s->class_sets[d]);
    sn_free(s->class_sets);
    sn_free(s->n_class_set);
    sn_free(s->units);
    sn_free(s->base);
    sn_free(s->grid_k);
    sn_free(s->grid_desc);
    memset(s, 0, sizeof *s);
}

int sweep_find(const struct sweep *s, const char *id)
{
    for (int i = 0; i < s->n_units; i++)
        if (strcmp(s->units[i].id, id) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------------------
 * The unit's configuration */

static void strlist_one(struct cfg_strlist *l, const char *v)
{
    l->n = 1;
    snprintf(l->v[0], sizeof l->v[0], "%s", v);
}

void sweep_grid_config(const struct sweep *s, int g, struct sn_config *out)
{
    SN_ASSERT(g >= 0 && g < s->n_grid);
    *out = *s->base;
    /* every point was applied and validated during expansion */
    if (grid_point_apply(s->base, g, out, NULL, 0) != SN_OK)
        sn_fatal("grid point g%d no longer applies: %s", g, sn_last_error());
}

void sweep_unit_config(const struct sweep *s, const struct sweep_unit *u,
                       struct sn_config *out)
{
    sweep_grid_config(s, u->grid, out);

    /* narrow the experiment to this unit */
    out->run.seed = u->seed;
    strlist_one(&out->data.roots, u->ds->root);
    snprintf(out->data.format, sizeof out->data.format, "%s", u->ds->format);
    out->data.classes.n = 0;
    for (int i = 0; i < u->n_class_set && i < CFG_LIST; i++) {
        const char *name = u->ds->classes[u->class_set[i]].name;
        if (u->setting == SWEEP_SINGLE && u->class_set[i] != u->cls) continue;
        snprintf(out->data.classes.v[out->data.classes.n++], CFG_ITEM, "%s", name);
    }
    strlist_one(&out->sweep.settings, sweep_setting_name(u->setting));
    strlist_one(&out->sweep.methods, u->method);
    out->sweep.seeds.n = 1;
    out->sweep.seeds.v[0] = (int)u->seed;
    out->sweep.n_axes = 0;
}

/* ---------------------------------------------------------------------------
 * Image selection */

struct image_list {
    int n, cap;
    struct unit_image *v;
};

static void list_push(struct image_list *l, int cls, int sample)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = sn_realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (struct unit_image){cls, sample};
}

static void list_all(struct image_list *l, const struct ds_dataset *ds, int cls, int test)
{
    int n = test ? ds->classes[cls].n_test : ds->classes[cls].n_train;
    for (int i = 0; i < n; i++)
        list_push(l, cls, i);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* k distinct training images of a class, drawn from the unit's seed with a
 * stream named after the dataset and class (so every method and grid point
 * of that seed gets the same shots), listed in index order. */
static void list_fewshot(struct image_list *l, const struct ds_dataset *ds, int cls,
                         long seed, int k)
{
    int n = ds->classes[cls].n_train;
    SN_ASSERT(k >= 1 && k <= n);
    char tag[512];
    snprintf(tag, sizeof tag, "fewshot/%s/%s", ds->name, ds->classes[cls].name);
    struct rng_state r;
    rng_seed(&r, (uint64_t)seed, rng_hash_str(tag));

    /* partial Fisher-Yates: the first k positions are the draw */
    int *idx = sn_malloc((size_t)n * sizeof *idx);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)rng_below(&r, (uint64_t)(n - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    qsort(idx, (size_t)k, sizeof *idx, cmp_int);
    for (int i = 0; i < k; i++)
        list_push(l, cls, idx[i]);
    sn_free(idx);
}

static void select_single(const struct sweep_unit *u, const struct ds_dataset *ds,
                          struct image_list *l)
{
    list_all(&l[0], ds, u->cls, 0);
    list_all(&l[1], ds, u->cls, 0);
    list_all(&l[2], ds, u->cls, 1);
}

static void select_multi(const struct sweep_unit *u, const struct ds_dataset *ds,
                         struct image_list *l)
{
    for (int i = 0; i < u->n_class_set; i++) {
        list_all(&l[0], ds, u->class_set[i], 0);
        list_all(&l[1], ds, u->class_set[i], 0);
        list_all(&l[2], ds, u->class_set[i], 1);
    }
}

/* Leave-one-out: the decoder never sees the held-out class. */
static void select_cross(const struct sweep_unit *u, const struct ds_dataset *ds,
                         struct image_list *l)
{
    list_all(&l[0], ds, u->cls, 0);
    for (int i = 0; i < u->n_class_set; i++)
        if (u->class_set[i] != u->cls) list_all(&l[1], ds, u->class_set[i], 0);
    list_all(&l[2], ds, u->cls, 1);
}

static void select_fewshot(const struct sweep_unit *u, const struct ds_dataset *ds,
                           struct image_list *l)
{
    for (int i = 0; i < u->n_class_set; i++) {
        int c = u->class_set[i];
        list_fewshot(&l[0], ds, c, u->seed, u->fewshot_k);
        list_fewshot(&l[1], ds, c, u->seed, u->fewshot_k);
        list_all(&l[2], ds, c, 1);
    }
}

int sweep_unit_images(const struct sweep_unit *u, const struct ds_dataset *ds,
                      struct unit_images *out)
{
    memset(out, 0, sizeof *out);
    if (u->cls >= ds->n_classes)
        return sn_error("unit %s: dataset %s has no class %d", u->id, ds->root, u->cls);

    /* bank, decoder training and test lists per SPEC section 5 */
    struct image_list l[3] = {{0}};
    switch (u->setting) {
    case SWEEP_SINGLE:
        select_single(u, ds, l);
        break;
    case SWEEP_MULTI:
        select_multi(u, ds, l);
        break;
    case SWEEP_CROSS:
        select_cross(u, ds, l);
        break;
    case SWEEP_FEWSHOT:
        select_fewshot(u, ds, l);
        break;
    }

    /* a method without a decoder trains on nothing */
    if (!sweep_method_trains(u->method)) l[1].n = 0;
    out->n_bank = l[0].n;
    out->bank = l[0].v;
    out->n_train = l[1].n;
    out->train = l[1].v;
    out->n_test = l[2].n;
    out->test = l[2].v;
    return SN_OK;
}

void unit_images_free(struct unit_images *im)
{
    sn_free(im->bank);
    sn_free(im->train);
    sn_free(im->test);
    memset(im, 0, sizeof *im);
}

/* ---------------------------------------------------------------------------
 * The selection as text */

struct text {
    char *s;
    size_t n, cap;
};

static void text_printf(struct text *t, const char *fmt, ...) SN_PRINTF(2, 3);

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    SN_ASSERT(need >= 0);
    if (t->n + (size_t)need + 1 > t->cap) {
        t->cap = 2 * (t->n + (size_t)need + 1);
        t->s = sn_realloc(t->s, t->cap);
    }
    va_start(ap, fmt);
    t->n += (size_t)vsnprintf(t->s + t->n, t->cap - t->n, fmt, ap);
    va_end(ap);
}

/* Paths relative to the dataset root keep the record the same on every
 * machine. */
static const char *relative(const struct ds_dataset *ds, const char *path)
{
    size_t n = strlen(ds->root);
    if (strncmp(path, ds->root, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

static void text_list(struct text *t, const char *role, const struct unit_image *v, int n,
                      const struct ds_dataset *ds, int test)
{
    for (int i = 0; i < n; i++) {
        const struct ds_class *c = &ds->classes[v[i].cls];
        const struct ds_sample *smp =
            test ? &c->test[v[i].sample] : &c->train[v[i].sample];
        text_printf(t, "%s\t%s\t%s\t%d\t%s\n", role, c->name, test ? "test" : "train",
                    v[i].sample, relative(ds, smp->path));
    }
}

char *unit_images_to_tsv(const struct unit_images *im, const struct ds_dataset *ds)
{
    struct text t = {0};
    text_printf(&t, "role\tclass\tsplit\tindex\tpath\n");
    text_list(&t, "bank", im->bank, im->n_bank, ds, 0);
    text_list(&t, "train", im->train, im->n_train, ds, 0);
    text_list(&t, "test", im->test, im->n_test, ds, 1);
    return t.s;
}
