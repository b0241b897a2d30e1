/*
 * metrics.c - exact ROC AUC, average precision and AUPRO (see metrics.h).
 *
 * Every metric walks the scores once in descending order. Scores become
 * unsigned 32-bit keys whose ascending order is the descending score order;
 * equal scores give equal keys, so a run of equal keys is one threshold and
 * the order inside a run never matters: only the counts at the end of a run
 * are used. Negatives (defect-free pixels, good images) and positives are
 * kept in two lists: the negatives, by far the most pixels, are sorted as
 * bare keys; the positives carry the id of their defect region for PRO. The
 * walk merges the two sorted lists.
 */
#define _GNU_SOURCE
#include "metrics.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- sort keys and the radix sort ---------------------------------------- */

/* A key whose unsigned order is the descending order of the float; +0 and -0
 * get the same key since they are the same threshold. */
static inline uint32_t key_desc(float f)
{
    uint32_t u;
    if (f == 0.0f) f = 0.0f;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)
#define RADIX_PASSES 3 /* 11 + 11 + 10 bits cover the 32-bit key */
#define RADIX_MAX_THREADS 64
#define RADIX_SERIAL_BELOW (1L << 16)

static inline unsigned radix_digit(uint32_t k, int pass)
{
    return (k >> (pass * RADIX_BITS)) & (RADIX_SIZE - 1);
}

/* Keys with an optional parallel payload (the region id of each key). */
struct radix_job {
    uint32_t *key, *id;   /* the data, NULL id when there is no payload */
    uint32_t *tkey, *tid; /* scratch of the same size */
    long n;
    int nt;                   /* threads */
    long (*hist)[RADIX_SIZE]; /* [thread][digit]: counts, then write offsets */
};

/*
 * Per-thread histogram of one pass over the data in its current order (each
 * thread's slice changes from pass to pass), turned into write offsets:
 * thread t writes its slice behind the slices of threads < t in each bucket,
 * which keeps the sort stable. Returns 0 when every key has the same digit
 * and the pass can be skipped.
 */
static int radix_offsets(struct radix_job *j, int pass)
{
#pragma omp parallel num_threads(j->nt)
    {
        int t = omp_get_thread_num();
        long lo = j->n * t / j->nt, hi = j->n * (t + 1) / j->nt;
        long *h = j->hist[t];
        memset(h, 0, sizeof(long) * RADIX_SIZE);
        for (long i = lo; i < hi; i++)
            h[radix_digit(j->key[i], pass)]++;
    }
    long run = 0;
    for (int b = 0; b < RADIX_SIZE; b++) {
        long total = 0;
        for (int t = 0; t < j->nt; t++) {
            long c = j->hist[t][b];
            j->hist[t][b] = run + total;
            total += c;
        }
        if (total == j->n) return 0;
        run += total;
    }
    return 1;
}

/* One stable scatter pass from (key, id) into (tkey, tid), then swap. */
static void radix_pass(struct radix_job *j, int pass)
{
#pragma omp parallel num_threads(j->nt)
    {
        int t = omp_get_thread_num();
        long lo = j->n * t / j->nt, hi = j->n * (t + 1) / j->nt;
        long *o = j->hist[t];
        for (long i = lo; i < hi; i++) {
            long at = o[radix_digit(j->key[i], pass)]++;
            j->tkey[at] = j->key[i];
            if (j->id) j->tid[at] = j->id[i];
        }
    }
    uint32_t *k = j->key, *d = j->id;
    j->key = j->tkey, j->id = j->id ? j->tid : NULL;
    j->tkey = k, j->tid = d;
}

/* Sort *key ascending (LSD radix, stable), permuting *id alike when given.
 * The arrays are sn_malloc'ed; the sorted data may end up in new buffers, so
 * the pointers are updated. */
static void radix_sort(uint32_t **key, uint32_t **id, long n)
{
    struct radix_job j = {.key = *key, .id = id ? *id : NULL, .n = n};
    j.nt = n < RADIX_SERIAL_BELOW ? 1 : SN_MIN(omp_get_max_threads(), RADIX_MAX_THREADS);
    j.tkey = sn_malloc(sizeof(uint32_t) * (size_t)SN_MAX(n, 1));
    j.tid = j.id ? sn_malloc(sizeof(uint32_t) * (size_t)SN_MAX(n, 1)) : NULL;
    j.hist = sn_malloc(sizeof(long) * RADIX_SIZE * j.nt);
    for (int p = 0; p < RADIX_PASSES; p++)
        if (radix_offsets(&j, p)) radix_pass(&j, p);
    *key = j.key;
    if (id) *id = j.id;
    sn_free(j.tkey);
    sn_free(j.tid);
    sn_free(j.hist);
}

/* ---- the curve walk -------------------------------------------------------- */

struct curve {
    long P, Nn;                    /* positives, negatives */
    long tp, fp, tp_prev, fp_prev; /* counts at this / the previous threshold */
    int64_t auc2;                  /* 2 x P x Nn x ROC AUC, exactly */
    double ap;                     /* sum (R_k - R_{k-1}) P_k */
    double pro, pro_c, pro_prev;   /* PRO (with Kahan compensation) */
    double fpr_prev, area, limit;  /* PRO area up to limit */
    int pro_done;
};

/* Add the PRO segment from the previous point to (fpr, pro), cut at the
 * limit by linear interpolation. */
static void curve_pro_segment(struct curve *c, double fpr, double pro)
{
    if (c->pro_done) return;
    if (fpr <= c->limit) {
        c->area += (fpr - c->fpr_prev) * (pro + c->pro_prev) * 0.5;
    } else {
        double f = (c->limit - c->fpr_prev) / (fpr - c->fpr_prev);
        double at = c->pro_prev + (pro - c->pro_prev) * f;
        c->area += (c->limit - c->fpr_prev) * (c->pro_prev + at) * 0.5;
        c->pro_done = 1;
    }
    c->fpr_prev = fpr;
    c->pro_prev = pro;
}

/* One threshold (the end of a run of equal scores): a point of every curve.
 * The ROC trapezoid is kept in integers, so ties cost no precision. */
static void curve_point(struct curve *c, int with_pro)
{
    c->auc2 += (int64_t)(c->fp - c->fp_prev) * (int64_t)(c->tp + c->tp_prev);
    if (c->tp > c->tp_prev)
        c->ap += (double)(c->tp - c->tp_prev) / (double)c->P *
                 ((double)c->tp / (double)(c->tp + c->fp));
    if (with_pro && c->Nn > 0)
        curve_pro_segment(c, (double)c->fp / (double)c->Nn, c->pro);
    c->tp_prev = c->tp;
    c->fp_prev = c->fp;
}

/* The scores of one evaluation, split by ground truth, sorted by key. */
struct scored {
    uint32_t *neg;      /* keys of the negatives */
    uint32_t *pos, *id; /* keys of the positives and their region ids (1-based) */
    long nn, np;
};

/* Merge-walk the two sorted lists; w (region id - 1 -> weight of each of its
 * pixels) may be NULL when PRO is not wanted. */
static void curve_walk(const struct scored *s, const double *w, double limit,
                       struct metric_pixel *out)
{
    struct curve c = {.P = s->np, .Nn = s->nn, .limit = limit};
    long i = 0, j = 0;
    while (i < s->nn || j < s->np) {
        /* The next threshold: the smallest key left in either list. */
        uint32_t k =
            (j >= s->np || (i < s->nn && s->neg[i] <= s->pos[j])) ? s->neg[i] : s->pos[j];
        while (i < s->nn && s->neg[i] == k)
            i++;
        for (; j < s->np && s->pos[j] == k; j++) {
            if (!w) continue;
            double y = w[s->id[j] - 1] - c.pro_c, t = c.pro + y;
            c.pro_c = (t - c.pro) - y;
            c.pro = t;
        }
        c.fp = i, c.tp = j;
        curve_point(&c, w != NULL);
    }

    /* Undefined metrics (one class only) are NaN. */
    int both = c.P > 0 && c.Nn > 0;
    out->p_auroc = both ? (double)c.auc2 / (2.0 * (double)c.P * (double)c.Nn) : NAN;
    out->p_ap = c.P > 0 ? c.ap : NAN;
    out->pro = (both && w) ? c.area / limit : NAN;
}

static void scored_sort(struct scored *s)
{
    radix_sort(&s->neg, NULL, s->nn);
    radix_sort(&s->pos, s->id ? &s->id : NULL, s->np);
}

static void curve_of_scores(const float *scores, const uint8_t *labels, long n,
                            struct metric_pixel *out)
{
    struct scored s = {0};
    s.neg = sn_malloc(sizeof(uint32_t) * (size_t)SN_MAX(n, 1));
    s.pos = sn_malloc(sizeof(uint32_t) * (size_t)SN_MAX(n, 1));
    for (long i = 0; i < n; i++) {
        if (labels[i])
            s.pos[s.np++] = key_desc(scores[i]);
        else
            s.neg[s.nn++] = key_desc(scores[i]);
    }
    scored_sort(&s);
    curve_walk(&s, NULL, 1.0, out);
    sn_free(s.neg);
    sn_free(s.pos);
}

double metric_auroc(const float *scores, const uint8_t *labels, long n)
{
    struct metric_pixel r;
    curve_of_scores(scores, labels, n, &r);
    return r.p_auroc;
}

double metric_ap(const float *scores, const uint8_t *labels, long n)
{
    struct metric_pixel r;
    curve_of_scores(scores, labels, n, &r);
    return r.p_ap;
}

/* ---- defect regions and the pixel lists ------------------------------------ */

/* The pixels of a set of images, split by the mask, before sorting. */
struct pixel_set {
    struct scored s;
    long cap_neg, cap_pos;
    long *area; /* pixels per region, indexed by id - 1 */
    long n_regions, cap_regions;
    uint32_t *lab; /* one image's region ids */
    int *stack;    /* flood-fill work list */
    long img_cap;
};

/* n_pixels: the number of pixels that will be added (sizes the lists once). */
static void pixel_set_init(struct pixel_set *ps, long n_pixels)
{
    memset(ps, 0, sizeof *ps);
    ps->cap_neg = SN_MAX(n_pixels, 1);
    ps->cap_pos = 1024;
    ps->s.neg = sn_malloc(sizeof(uint32_t) * (size_t)ps->cap_neg);
    ps->s.pos = sn_malloc(sizeof(uint32_t) * (size_t)ps->cap_pos);
    ps->s.id = sn_malloc(sizeof(uint32_t) * (size_t)ps->cap_pos);
    ps->cap_regions = 64;
    ps->area = sn_malloc(sizeof(long) * (size_t)ps->cap_regions);
}

static void pixel_set_free(struct pixel_set *ps)
{
    sn_free(ps->s.neg);
    sn_free(ps->s.pos);
    sn_free(ps->s.id);
    sn_free(ps->area);
    sn_free(ps->lab);
    sn_free(ps->stack);
    memset(ps, 0, sizeof *ps);
}

static long region_new(struct pixel_set *ps)
{
    if (ps->n_regions == ps->cap_regions) {
        ps->cap_regions *= 2;
        ps->area = sn_realloc(ps->area, sizeof(long) * (size_t)ps->cap_regions);
    }
    ps->area[ps->n_regions] = 0;
    return ++ps->n_regions;
}

/* Flood-fill the 8-connected defect region containing pixel p0 with id. */
static void region_fill(struct pixel_set *ps, const uint8_t *mask, int H, int W, int p0,
                        uint32_t id)
{
    int top = 0;
    ps->lab[p0] = id;
    ps->stack[top++] = p0;
    while (top) {
        int p = ps->stack[--top], y = p / W, x = p % W;
        ps->area[id - 1]++;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int yy = y + dy, xx = x + dx, q = yy * W + xx;
                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                if (!mask[q] || ps->lab[q]) continue;
                ps->lab[q] = id;
                ps->stack[top++] = q;
            }
    }
}

/* Room for hw more pixels in either list, and one image's work arrays. */
static void pixel_set_reserve(struct pixel_set *ps, long hw, long n_pos)
{
    if (ps->img_cap < hw) {
        sn_free(ps->lab);
        sn_free(ps->stack);
        ps->lab = sn_malloc(sizeof(uint32_t) * (size_t)hw);
        ps->stack = sn_malloc(sizeof(int) * (size_t)hw);
        ps->img_cap = hw;
    }
    if (ps->s.nn + hw > ps->cap_neg) {
        ps->cap_neg = SN_MAX(ps->cap_neg * 2, ps->s.nn + hw);
        ps->s.neg = sn_realloc(ps->s.neg, sizeof(uint32_t) * (size_t)ps->cap_neg);
    }
    if (ps->s.np + n_pos > ps->cap_pos) {
        ps->cap_pos = SN_MAX(ps->cap_pos * 2, ps->s.np + n_pos);
        ps->s.pos = sn_realloc(ps->s.pos, sizeof(uint32_t) * (size_t)ps->cap_pos);
        ps->s.id = sn_realloc(ps->s.id, sizeof(uint32_t) * (size_t)ps->cap_pos);
    }
}

/* Append one image: label its defect regions, then file every pixel's key
 * under the negatives or, with its region id, the positives. */
static void pixel_set_add(struct pixel_set *ps, const float *map, const uint8_t *mask,
                          int H, int W)
{
    long hw = (long)H * W, n_pos = 0;
    for (long p = 0; p < hw; p++)
        n_pos += mask[p] != 0;
    pixel_set_reserve(ps, hw, n_pos);

    /* Defect regions: 8-connected components of the binarised mask. */
    if (n_pos) {
        memset(ps->lab, 0, sizeof(uint32_t) * (size_t)hw);
        for (int p = 0; p < hw; p++)
            if (mask[p] && !ps->lab[p])
                region_fill(ps, mask, H, W, p, (uint32_t)region_new(ps));
    }

    /* Keys, split by ground truth. */
    struct scored *s = &ps->s;
    for (long p = 0; p < hw; p++) {
        uint32_t k = key_desc(map[p]);
        if (!mask[p]) {
            s->neg[s->nn++] = k;
        } else {
            s->pos[s->np] = k;
            s->id[s->np++] = ps->lab[p];
        }
    }
}

/* Sort and walk a pixel set: each region pixel weighs 1 / (area x regions). */
static void pixel_set_metrics(struct pixel_set *ps, double limit,
                              struct metric_pixel *out)
{
    double *w = sn_malloc(sizeof(double) * (size_t)SN_MAX(ps->n_regions, 1));
    for (long r = 0; r < ps->n_regions; r++)
        w[r] = 1.0 / ((double)ps->area[r] * (double)ps->n_regions);
    scored_sort(&ps->s);
    curve_walk(&ps->s, w, limit, out);
    sn_free(w);
}

void metric_pixels(const float *maps, const uint8_t *masks, int N, int H, int W,
                   double fpr_limit, struct metric_pixel *out)
{
    long hw = (long)H * W;
    struct pixel_set ps;
    pixel_set_init(&ps, hw * N);
    for (int i = 0; i < N; i++)
        pixel_set_add(&ps, maps + i * hw, masks + i * hw, H, W);
    pixel_set_metrics(&ps, fpr_limit, out);
    pixel_set_free(&ps);
}

double metric_aupro(const float *maps, const uint8_t *masks, int N, int H, int W,
                    double fpr_limit)
{
    struct metric_pixel r;
    metric_pixels(maps, masks, N, H, W, fpr_limit, &r);
    return r.pro;
}

/* ---- per-class tables ------------------------------------------------------ */

/* Class names in order of first appearance; cls_of[i] = row of image i. */
static int classes_find(const struct maps_file *m, char ***names, int *cls_of)
{
    int nc = 0;
    char **v = sn_calloc((size_t)m->N, sizeof(char *));
    for (int i = 0; i < m->N; i++) {
        int c = 0;
        while (c < nc && strcmp(v[c], m->cls[i]))
            c++;
        if (c == nc) v[nc++] = m->cls[i];
        cls_of[i] = c;
    }
    *names = v;
    return nc;
}

/* The images of class c: scores and labels for I-AUROC, pixels for the rest. */
static int class_row(struct maps_file *m, const int *cls_of, int c, double limit,
                     struct metric_row *row)
{
    long hw = (long)m->H * m->W;
    float *sc = sn_malloc(sizeof(float) * (size_t)m->N);
    uint8_t *lb = sn_malloc((size_t)m->N);
    float *map = m->maps ? NULL : sn_malloc(sizeof(float) * (size_t)hw);
    uint8_t *mask = m->maps ? NULL : sn_malloc((size_t)hw);
    struct pixel_set s;
    int rc = SN_OK;
    long n = 0, n_class = 0;
    for (int i = 0; i < m->N; i++)
        n_class += cls_of[i] == c;
    pixel_set_init(&s, hw * n_class);

    for (int i = 0; i < m->N && !rc; i++) {
        if (cls_of[i] != c) continue;
        sc[n] = m->scores[i];
        lb[n++] = m->labels[i];
        if (m->maps)
            pixel_set_add(&s, m->maps + i * hw, m->masks + i * hw, m->H, m->W);
        else if (!(rc = maps_load(m, i, map, mask)))
            pixel_set_add(&s, map, mask, m->H, m->W);
    }
    if (!rc) {
        struct metric_pixel px;
        pixel_set_metrics(&s, limit, &px);
        row->p_ap = px.p_ap, row->pro = px.pro, row->p_auroc = px.p_auroc;
        row->i_auroc = metric_auroc(sc, lb, n);
        row->n_images = n;
        row->n_defective = 0;
        for (long k = 0; k < n; k++)
            row->n_defective += lb[k];
    }
    pixel_set_free(&s);
    sn_free(mask);
    sn_free(map);
    sn_free(lb);
    sn_free(sc);
    return rc;
}

/* Mean over classes, leaving out (with a warning) the undefined values. */
static void table_mean(struct metric_table *t, const char *src)
{
    int nc = t->n_rows - 1;
    struct metric_row *mean = &t->rows[nc];
    static const char *names[4] = {"p_ap", "pro", "p_auroc", "i_auroc"};
    snprintf(mean->cls, sizeof mean->cls, "mean");
    for (int k = 0; k < 4; k++) {
        double sum = 0;
        int cnt = 0;
        for (int c = 0; c < nc; c++) {
            const struct metric_row *r = &t->rows[c];
            double v = k == 0   ? r->p_ap
                       : k == 1 ? r->pro
                       : k == 2 ? r->p_auroc
                                : r->i_auroc;
            if (isnan(v))
                log_warn("%s: class %s: %s is undefined (%ld images, %ld defective); "
                         "left out of the mean",
                         src, r->cls, names[k], r->n_images, r->n_defective);
            else
                sum += v, cnt++;
        }
        double v = cnt ? sum / cnt : NAN;
        if (k == 0)
            mean->p_ap = v;
        else if (k == 1)
            mean->pro = v;
        else if (k == 2)
            mean->p_auroc = v;
        else
            mean->i_auroc = v;
    }
    for (int c = 0; c < nc; c++) {
        mean->n_images += t->rows[c].n_images;
        mean->n_defective += t->rows[c].n_defective;
    }
}

int metrics_compute(struct maps_file *m, double fpr_limit, struct metric_table *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->method, sizeof t->method, "%s", m->method);
    snprintf(t->setting, sizeof t->setting, "%s", m->setting);
    snprintf(t->dataset, sizeof t->dataset, "%s", m->dataset);
    snprintf(t->source, sizeof t->source, "%s", m->file);
    t->fpr_limit = fpr_limit;

    /* One row per class, in order of first appearance, then the mean. */
    int *cls_of = sn_malloc(sizeof(int) * (size_t)SN_MAX(m->N, 1));
    char **names;
    int nc = classes_find(m, &names, cls_of);
    t->n_rows = nc + 1;
    t->rows = sn_calloc((size_t)t->n_rows, sizeof(struct metric_row));
    int rc = SN_OK;
    for (int c = 0; c < nc && !rc; c++) {
        double t0 = sn_now();
        snprintf(t->rows[c].cls, sizeof t->rows[c].cls, "%s", names[c]);
        rc = class_row(m, cls_of, c, fpr_limit, &t->rows[c]);
        if (!rc)
            log_info("metrics %s: %s (%ld images) in %.2f s", m->file, names[c],
                     t->rows[c].n_images, sn_now() - t0);
    }
    if (!rc) table_mean(t, m->file);
    sn_free(names);
    sn_free(cls_of);
    if (rc) metric_table_free(t);
    return rc;
}

void metric_table_free(struct metric_table *t)
{
    sn_free(t->rows);
    memset(t, 0, sizeof *t);
}

/* ---- CSV and Markdown ------------------------------------------------------ */

static void csv_value(FILE *f, double v)
{
    if (isnan(v))
        fputs(",nan", f);
    else
        fprintf(f, ",%.17g", v);
}

/* A class name as one CSV field: quoted when it holds a comma, quote or
 * line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Close a memory stream and write its text atomically to path. */
static int memfile_commit(FILE *f, char **buf, size_t *len, const char *path)
{
    SN_CHECK_IO(fclose(f) == 0, path);
    int rc = sn_write_file_atomic(path, *buf, *len);
    free(*buf); /* allocated by open_memstream, not by sn_malloc */
    return rc;
}

int metrics_write_csv(const struct metric_table *t, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SN_CHECK_IO(f, path);
    fputs("class,p_ap,pro,p_auroc,i_auroc\n", f);
    for (int r = 0; r < t->n_rows; r++) {
        const struct metric_row *row = &t->rows[r];
        csv_field(f, row->cls);
        csv_value(f, row->p_ap);
        csv_value(f, row->pro);
        csv_value(f, row->p_auroc);
        csv_value(f, row->i_auroc);
        fputc('\n', f);
    }
    return memfile_commit(f, &buf, &len, path);
}

static void md_value(FILE *f, double v)
{
    if (isnan(v))
        fputs(" n/a |", f);
    else
        fprintf(f, " %.1f |", 100.0 * v);
}

static void md_table(FILE *f, const struct metric_table *t)
{
    const char *src = strrchr(t->source, '/') ? strrchr(t->source, '/') + 1 : t->source;
    /* Heading: method / setting / dataset, or the file for a file without
     * those attributes. */
    const char *parts[3] = {t->method, t->setting, t->dataset};
    int named = 0;
    fputs("##", f);
    for (int k = 0; k < 3; k++)
        if (parts[k][0]) fprintf(f, "%s %s", named++ ? " /" : "", parts[k]);
    if (!named) fprintf(f, " %s", src);
    fputs("\n\n", f);
    fprintf(f,
            "Maps: `%s`. Percent; PRO integrated up to FPR %g. n/a: undefined "
            "(one class only), left out of the mean.\n\n",
            src, t->fpr_limit);
    fputs("| class | P-AP | PRO | P-AUROC | I-AUROC |\n", f);
    fputs("|:--|--:|--:|--:|--:|\n", f);
    for (int r = 0; r < t->n_rows; r++) {
        const struct metric_row *row = &t->rows[r];
        int mean = r == t->n_rows - 1;
        fprintf(f, mean ? "| **%s** |" : "| %s |", row->cls);
        md_value(f, row->p_ap);
        md_value(f, row->pro);
        md_value(f, row->p_auroc);
        md_value(f, row->i_auroc);
        fputc('\n', f);
    }
}

int metrics_write_markdown(const struct metric_table *t, int n_tables, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SN_CHECK_IO(f, path);
    for (int k = 0; k < n_tables; k++) {
        if (k) fputc('\n', f);
        md_table(f, &t[k]);
    }
    return memfile_commit(f, &buf, &len, path);
}
