/*
 * collect.c - gathering the units' metrics.csv into per-setting tables.
 */
#define _GNU_SOURCE
#include "collect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "metrics.h"
#include "runstate.h"

/* One table block: the units of a (method, seed, grid point). */
struct block {
    const struct sweep_unit *first;
    int n_rows, cap;
    struct metric_row *rows;
    int n_missing;
    char missing[8][SWEEP_ID_MAX]; /* the first few, for the table */
};

/* ---------------------------------------------------------------------------
 * Reading metrics.csv */

/* The class field: plain, or quoted with "" for a quote. */
static const char *csv_class(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p != '"') {
        while (*p && *p != ',' && n + 1 < cap)
            out[n++] = *p++;
        while (*p && *p != ',')
            p++;
    } else {
        for (p++; *p && !(p[0] == '"' && p[1] != '"'); p++) {
            if (p[0] == '"') p++;
            if (n + 1 < cap) out[n++] = *p;
        }
        if (*p == '"') p++;
    }
    out[n] = 0;
    return p;
}

static int csv_row(const char *line, struct metric_row *r, const char *path, int at)
{
    memset(r, 0, sizeof *r);
    const char *p = csv_class(line, r->cls, sizeof r->cls);
    double *v[4] = {&r->p_ap, &r->pro, &r->p_auroc, &r->i_auroc};
    for (int k = 0; k < 4; k++) {
        char *end;
        if (*p != ',') return sn_error("%s:%d: expected 5 fields", path, at);
        *v[k] = strtod(p + 1, &end);
        if (end == p + 1)
            return sn_error("%s:%d: field %d is not a number", path, at, k + 2);
        p = end;
    }
    return SN_OK;
}

static void block_push(struct block *b, const struct metric_row *r)
{
    if (b->n_rows == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 16;
        b->rows = sn_realloc(b->rows, (size_t)b->cap * sizeof *b->rows);
    }
    b->rows[b->n_rows++] = *r;
}

/* The class rows of a unit's metrics.csv (its own mean row is recomputed). */
static int block_read(struct block *b, const char *path)
{
    char *text = sn_read_file(path, NULL);
    if (!text) return SN_EUSER;
    int st = SN_OK, at = 1;
    char *save, *line = strtok_r(text, "\n", &save);
    if (!line || strncmp(line, "class,", 6))
        st = sn_error("%s: not a metrics table (header '%s')", path, line ? line : "");
    while (st == SN_OK && (line = strtok_r(NULL, "\n", &save))) {
        struct metric_row r;
        at++;
        st = csv_row(line, &r, path, at);
        if (st == SN_OK && strcmp(r.cls, "mean") != 0) block_push(b, &r);
    }
    sn_free(text);
    return st;
}

/* ---------------------------------------------------------------------------
 * Blocks of a (dataset, setting) */

static int block_key_eq(const struct sweep_unit *a, const struct sweep_unit *b)
{
    return !strcmp(a->method, b->method) && a->seed == b->seed && a->grid == b->grid;
}

static void block_missing(struct block *b, const struct sweep_unit *u)
{
    if (b->n_missing < (int)SN_ARRAY_LEN(b->missing))
        snprintf(b->missing[b->n_missing], SWEEP_ID_MAX, "%s", u->id);
    b->n_missing++;
}

/* Add one unit's rows to its block (created on first sight). */
static int blocks_add(struct block **bs, int *n, const struct sweep_unit *u,
                      const char *run_dir)
{
    int k = 0;
    while (k < *n && !block_key_eq((*bs)[k].first, u))
        k++;
    if (k == *n) {
        *bs = sn_realloc(*bs, (size_t)(*n + 1) * sizeof **bs);
        memset(&(*bs)[k], 0, sizeof **bs);
        (*bs)[k].first = u;
        (*n)++;
    }
    char dir[4096], path[4200];
    if (runstate_unit_dir(run_dir, u, dir, sizeof dir) != SN_OK) return SN_EUSER;
    if (runstate_unit_check(dir, u, NULL, NULL, NULL, 0) != UNIT_DONE) {
        block_missing(&(*bs)[k], u);
        return SN_OK;
    }
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    return block_read(&(*bs)[k], path);
}

/* The mean over classes of each metric, NaN values left out. */
static struct metric_row block_mean(const struct block *b)
{
    struct metric_row m = {.cls = "mean"};
    if (b->n_missing) snprintf(m.cls, sizeof m.cls, "mean (partial)");
    double *out[4] = {&m.p_ap, &m.pro, &m.p_auroc, &m.i_auroc};
    for (int k = 0; k < 4; k++) {
        double sum = 0;
        int n = 0;
        for (int r = 0; r < b->n_rows; r++) {
            const double *v[4] = {&b->rows[r].p_ap, &b->rows[r].pro, &b->rows[r].p_auroc,
                                  &b->rows[r].i_auroc};
            if (!isnan(*v[k])) sum += *v[k], n++;
        }
        *out[k] = n ? sum / n : NAN;
    }
    return m;
}

/* ---------------------------------------------------------------------------
 * Writing */

static void tsv_value(FILE *f, double v)
{
    if (isnan(v))
        fputs("\tnan", f);
    else
        fprintf(f, "\t%.2f", 100.0 * v);
}

static void tsv_row(FILE *f, const struct sweep_unit *u, const struct metric_row *r)
{
    fprintf(f, "%s\tg%d\t%ld\t%s", u->method, u->grid, u->seed, r->cls);
    tsv_value(f, r->p_ap);
    tsv_value(f, r->pro);
    tsv_value(f, r->p_auroc);
    tsv_value(f, r->i_auroc);
    fputc('\n', f);
}

static int write_tsv(const char *path, const struct block *bs, int n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SN_CHECK_IO(f, path);
    fputs("method\tgrid\tseed\tclass\tP-AP\tPRO\tP-AUROC\tI-AUROC\n", f);
    for (int k = 0; k < n; k++) {
        const struct block *b = &bs[k];
        for (int i = 0; i < SN_MIN(b->n_missing, (int)SN_ARRAY_LEN(b->missing)); i++)
            fprintf(f, "# missing: %s\n", b->missing[i]);
        if (b->n_missing > (int)SN_ARRAY_LEN(b->missing))
            fprintf(f, "# missing: %d more\n",
                    b->n_missing - (int)SN_ARRAY_LEN(b->missing));
        for (int r = 0; r < b->n_rows; r++)
            tsv_row(f, b->first, &b->rows[r]);
        struct metric_row mean = block_mean(b);
        tsv_row(f, b->first, &mean);
    }
    SN_CHECK_IO(fclose(f) == 0, path);
    int st = sn_write_file_atomic(path, buf, len);
    free(buf); /* from open_memstream */
    return st;
}

static int write_md(const char *path, const struct sweep *s, const struct block *bs,
                    int n)
{
    struct metric_table *t = sn_calloc((size_t)n, sizeof *t);
    for (int k = 0; k < n; k++) {
        const struct sweep_unit *u = bs[k].first;
        t[k].n_rows = bs[k].n_rows + 1;
        t[k].rows = sn_calloc((size_t)t[k].n_rows, sizeof *t[k].rows);
        memcpy(t[k].rows, bs[k].rows, (size_t)bs[k].n_rows * sizeof *t[k].rows);
        t[k].rows[bs[k].n_rows] = block_mean(&bs[k]);
        snprintf(t[k].method, sizeof t[k].method, "%s g%d seed %ld", u->method, u->grid,
                 u->seed);
        snprintf(t[k].setting, sizeof t[k].setting, "%s", sweep_setting_name(u->setting));
        snprintf(t[k].dataset, sizeof t[k].dataset, "%s", u->ds->name);
        snprintf(t[k].source, sizeof t[k].source, "g%d: %s", u->grid,
                 s->grid_desc[u->grid][0] ? s->grid_desc[u->grid] : "base configuration");
        t[k].fpr_limit = METRICS_FPR_LIMIT;
    }
    int st = metrics_write_markdown(t, n, path);
    for (int k = 0; k < n; k++)
        metric_table_free(&t[k]);
    sn_free(t);
    return st;
}

/* One (dataset, setting): its blocks, then both files. */
static int collect_one(const struct sweep *s, const char *run_dir, int d,
                       enum sweep_setting setting, int *n_missing)
{
    struct block *bs = NULL;
    int n = 0, st = SN_OK;
    for (int i = 0; i < s->n_units && st == SN_OK; i++)
        if (s->units[i].dataset == d && s->units[i].setting == setting)
            st = blocks_add(&bs, &n, &s->units[i], run_dir);

    char path[4096];
    const char *name = sweep_setting_name(setting);
    if (st == SN_OK && n > 0) {
        snprintf(path, sizeof path, "%s/tables/%s_%s.tsv", run_dir, s->ds[d].name, name);
        st = write_tsv(path, bs, n);
    }
    if (st == SN_OK && n > 0) {
        snprintf(path, sizeof path, "%s/tables/%s_%s.md", run_dir, s->ds[d].name, name);
        st = write_md(path, s, bs, n);
        log_info("table %s (%d block(s))", path, n);
    }
    for (int k = 0; k < n; k++) {
        *n_missing += bs[k].n_missing;
        sn_free(bs[k].rows);
    }
    sn_free(bs);
    return st;
}

int collect_tables(const struct sweep *s, const char *run_dir, int *n_missing)
{
    char dir[4096];
    *n_missing = 0;
    if (sn_path_join(dir, sizeof dir, run_dir, "tables") != SN_OK || sn_mkdirs(dir))
        return SN_EUSER;
    for (int d = 0; d < s->n_datasets; d++)
        for (int k = SWEEP_SINGLE; k <= SWEEP_FEWSHOT; k++)
            if (collect_one(s, run_dir, d, (enum sweep_setting)k, n_missing) != SN_OK)
                return SN_EUSER;
    if (*n_missing) log_warn("tables: %d unit(s) without metrics yet", *n_missing);
    return SN_OK;
}
