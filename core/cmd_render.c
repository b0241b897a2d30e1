/*
 * cmd_render.c - `snarm render`: pictures of stored anomaly maps.
 *
 * Each picture shows three panels side by side: the input crop, the crop with
 * the ground-truth outline (green), and the heat map blended over the crop
 * with the outline again. Heat colours span the range of the rendered maps
 * (printed in the index page), so pictures of one run compare directly.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/image.h"
#include "log.h"
#include "maps.h"

#define RENDER_GAP 4 /* pixels between panels */
#define RENDER_DEFAULT_WORST 12

/* ---- choosing the images ---------------------------------------------------- */

/*
 * How much an image costs I-AUROC within its class: for a defective image,
 * the share of the class's good images scoring at least as high; for a good
 * image, the share of the class's defective images scoring at most as high.
 * The worst are the defective images with the lowest scores and the good
 * images with the highest, on one scale.
 */
static void render_badness(const struct maps_file *m, double *bad)
{
    for (int i = 0; i < m->N; i++) {
        long hit = 0, other = 0;
        for (int j = 0; j < m->N; j++) {
            if (strcmp(m->cls[i], m->cls[j]) || m->labels[j] == m->labels[i]) continue;
            other++;
            hit += m->labels[i] ? m->scores[j] >= m->scores[i]
                                : m->scores[j] <= m->scores[i];
        }
        bad[i] = other ? (double)hit / (double)other : 0.0;
    }
}

/* Indices of the n worst images, worst first, ties by index. */
static int render_pick_worst(const struct maps_file *m, int n, int *pick, double *bad)
{
    char *used = sn_calloc((size_t)m->N, 1);
    int k = 0;
    for (; k < n && k < m->N; k++) {
        int best = -1;
        for (int i = 0; i < m->N; i++)
            if (!used[i] && (best < 0 || bad[i] > bad[best])) best = i;
        used[best] = 1;
        pick[k] = best;
    }
    sn_free(used);
    return k;
}

/* "3,17,40" -> indices, each checked against the file's N. */
static int render_parse_list(const char *s, const struct maps_file *m, int *pick, int cap)
{
    int k = 0;
    char *dup = sn_strdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (end == tok || *end || v < 0 || v >= m->N) {
            rc = sn_error("--images: '%s' is not an image index of %s (0..%d)", tok,
                          m->file, m->N - 1);
            break;
        }
        if (k < cap) pick[k++] = (int)v;
    }
    sn_free(dup);
    if (!rc && k == 0) rc = sn_error("--images: '%s' names no image index of %s", s, m->file);
    return rc ? -1 : k;
}

/* ---- drawing ---------------------------------------------------------------- */

/* A blue-cyan-yellow-red ramp for t in [0, 1]. */
static void heat_colour(double t, uint8_t *rgb)
{
    static const double stops[5][3] = {
        {0, 0, 0.5}, {0, 0.6, 1}, {0.2, 1, 0.5}, {1, 0.9, 0}, {0.9, 0, 0}};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double x = t * 4;
    int a = x >= 4 ? 3 : (int)x;
    double f = x - a;
    for (int c = 0; c < 3; c++)
        rgb[c] = (uint8_t)lrint(255 * (stops[a][c] * (1 - f) + stops[a + 1][c] * f));
}

/* A mask pixel with a 4-neighbour outside the mask lies on the outline. */
static int on_outline(const uint8_t *mask, int H, int W, int y, int x)
{
    if (!mask[y * W + x]) return 0;
    return y == 0 || x == 0 || y == H - 1 || x == W - 1 || !mask[(y - 1) * W + x] ||
           !mask[(y + 1) * W + x] || !mask[y * W + x - 1] || !mask[y * W + x + 1];
}

struct render_ctx {
    struct maps_file *m;
    const char *dir;
    float lo, hi; /* heat range */
    float *map;
    uint8_t *mask, *rgb, *canvas;
};

static void draw_panels(struct render_ctx *r)
{
    int H = r->m->H, W = r->m->W, CW = 3 * W + 2 * RENDER_GAP;
    memset(r->canvas, 255, (size_t)H * CW * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *src = r->rgb + ((long)y * W + x) * 3;
            uint8_t *p0 = r->canvas + ((long)y * CW + x) * 3;
            uint8_t *p1 = p0 + (W + RENDER_GAP) * 3, *p2 = p1 + (W + RENDER_GAP) * 3;
            uint8_t heat[3];
            double t = (r->map[(long)y * W + x] - r->lo) / (double)(r->hi - r->lo);
            heat_colour(t, heat);
            for (int c = 0; c < 3; c++) {
                p0[c] = p1[c] = src[c];
                p2[c] = (uint8_t)((src[c] * 2 + heat[c] * 3 + 2) / 5);
            }
            if (on_outline(r->mask, H, W, y, x)) {
                p1[0] = p2[0] = 0, p1[1] = p2[1] = 255, p1[2] = p2[2] = 0;
            }
        }
}

/* Render image i to DIR/NNNN_class.png; name receives the file name. */
static int render_one(struct render_ctx *r, int i, char *name, size_t cap)
{
    struct maps_file *m = r->m;
    int rc = maps_load(m, i, r->map, r->mask);
    if (rc) return rc;
    if (m->has_images)
        rc = maps_load_rgb(m, i, r->rgb);
    else
        memset(r->rgb, 64, (size_t)m->H * m->W * 3);
    if (rc) return rc;
    draw_panels(r);

    /* A file name safe for any class name. */
    int len = snprintf(name, cap, "%05d_", i);
    for (const char *s = m->cls[i]; *s && len < (int)cap - 5; s++)
        name[len++] = (char)((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                                     (*s >= '0' && *s <= '9') || *s == '-'
                                 ? *s
                                 : '_');
    snprintf(name + len, cap - (size_t)len, ".png");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    return image_write_png(path, r->canvas, 3 * m->W + 2 * RENDER_GAP, m->H, 3);
}

/* ---- the index page --------------------------------------------------------- */

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static void index_head(FILE *f, const struct render_ctx *r, int worst)
{
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>snarm maps: ", f);
    html_text(f, r->m->file);
    fputs("</title></head>\n<body>\n<h1>", f);
    html_text(f, r->m->method[0] ? r->m->method : r->m->file);
    fputs(" ", f);
    html_text(f, r->m->setting);
    fputs(" ", f);
    html_text(f, r->m->dataset);
    fputs("</h1>\n<p>Panels: input crop | ground-truth outline (green) | heat map, "
          "colours spanning ",
          f);
    fprintf(f, "%.4g (blue) to %.4g (red). ", (double)r->lo, (double)r->hi);
    if (worst)
        fputs("Worst first: defective images with the lowest scores and good images "
              "with the highest, ranked by the share of the other kind of image of "
              "the same class that they lose to.",
              f);
    fputs(" 'Loses to': for a defective image, the share of good images of its class "
          "scoring at least as high; for a good image, the share of defective images "
          "scoring at most as high.",
          f);
    fputs("</p>\n<table border=\"1\" cellpadding=\"4\">\n<tr><th>index</th>"
          "<th>class</th><th>label</th><th>score</th><th>loses to</th><th>source</th>"
          "<th>picture</th>"
          "</tr>\n",
          f);
}

static void index_row(FILE *f, const struct maps_file *m, int i, double bad,
                      const char *png)
{
    fprintf(f, "<tr><td>%d</td><td>", i);
    html_text(f, m->cls[i]);
    fprintf(f, "</td><td>%s</td><td>%.6g</td><td>%.1f %%</td><td>",
            m->labels[i] ? "defective" : "good", (double)m->scores[i], 100 * bad);
    html_text(f, m->path[i]);
    fputs("</td><td><a href=\"", f);
    html_text(f, png);
    fputs("\"><img src=\"", f);
    html_text(f, png);
    fputs("\" width=\"600\"></a></td></tr>\n", f);
}

/* ---- the command -------------------------------------------------------------- */

/* The heat range: smallest and largest value over the chosen maps. */
static int render_range(struct render_ctx *r, const int *pick, int n)
{
    long hw = (long)r->m->H * r->m->W;
    r->lo = INFINITY, r->hi = -INFINITY;
    for (int k = 0; k < n; k++) {
        if (maps_load(r->m, pick[k], r->map, NULL)) return SN_EUSER;
        for (long p = 0; p < hw; p++) {
            r->lo = SN_MIN(r->lo, r->map[p]);
            r->hi = SN_MAX(r->hi, r->map[p]);
        }
    }
    if (!(r->hi > r->lo)) r->hi = r->lo + 1.0f;
    return SN_OK;
}

static int render_all(struct render_ctx *r, const int *pick, const double *bad, int n,
                      int worst)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SN_CHECK_IO(f, r->dir);
    int rc = render_range(r, pick, n);
    if (!rc) index_head(f, r, worst);
    for (int k = 0; k < n && !rc; k++) {
        char png[256];
        rc = render_one(r, pick[k], png, sizeof png);
        if (!rc) index_row(f, r->m, pick[k], bad[pick[k]], png);
    }
    fputs("</table>\n</body></html>\n", f);
    SN_CHECK_IO(fclose(f) == 0, r->dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/index.html", r->dir);
    if (!rc) rc = sn_write_file_atomic(path, buf, len);
    free(buf); /* from open_memstream */
    if (!rc) printf("rendered %d images of %s -> %s\n", n, r->m->file, path);
    return rc;
}

static int render_run(const char *file, const char *dir, int worst, const char *list)
{
    struct maps_file m;
    struct render_ctx r = {.m = &m, .dir = dir};
    int rc = maps_open(file, &m);
    if (!rc) rc = sn_mkdirs(dir);
    int *pick = rc ? NULL : sn_malloc(sizeof(int) * (size_t)m.N);
    int n = 0;

    /* The chosen images, or the worst ones. */
    double *bad = rc ? NULL : sn_malloc(sizeof(double) * (size_t)m.N);
    if (!rc) render_badness(&m, bad);
    if (!rc && list) {
        n = render_parse_list(list, &m, pick, m.N);
        if (n < 0) rc = SN_EUSER;
    } else if (!rc) {
        n = render_pick_worst(&m, worst, pick, bad);
    }
    if (!rc && !m.has_images)
        log_warn("%s has no /images; the input panels are drawn grey", file);

    /* Draw and index them. */
    if (!rc) {
        long hw = (long)m.H * m.W;
        r.map = sn_malloc(sizeof(float) * (size_t)hw);
        r.mask = sn_malloc((size_t)hw);
        r.rgb = sn_malloc((size_t)hw * 3);
        r.canvas = sn_malloc((size_t)m.H * (3 * m.W + 2 * RENDER_GAP) * 3);
        rc = render_all(&r, pick, bad, n, list == NULL);
    }
    sn_free(bad);
    sn_free(r.canvas);
    sn_free(r.rgb);
    sn_free(r.mask);
    sn_free(r.map);
    sn_free(pick);
    maps_file_free(&m);
    return rc;
}

static void render_usage(FILE *out)
{
    fprintf(out,
            "usage: snarm render MAPS.h5 OUTDIR [--worst N | --images i,j,...]\n\n"
            "Draw PNGs of stored maps: input crop | ground-truth outline | heat map,\n"
            "plus OUTDIR/index.html linking them. Without --images, the N worst-scored\n"
            "images [%d]: defective images with the lowest scores and good images with\n"
            "the highest, ranked by the share of the other kind of image of the same\n"
            "class that they lose to (how much each costs I-AUROC).\n\n"
            "options:\n"
            "  --worst N       how many of the worst images [%d]\n"
            "  --images LIST   comma-separated image indices instead\n"
            "  --log LEVEL     error, warn, info or debug [info]\n",
            RENDER_DEFAULT_WORST, RENDER_DEFAULT_WORST);
}

int cmd_render(int argc, char **argv)
{
    static const struct option opts[] = {{"worst", required_argument, 0, 'w'},
                                         {"images", required_argument, 0, 'i'},
                                         {"log", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long worst = RENDER_DEFAULT_WORST;
    const char *list = NULL;
    int c, rc, worst_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            render_usage(stdout);
            return CLI_OK;
        } else if (c == 'w') {
            if ((rc = cli_parse_long("render", "--worst", optarg, &worst))) return rc;
            if (worst < 1) return cli_usage("render", "--worst must be at least 1");
            worst_given = 1;
        } else if (c == 'i') {
            list = optarg;
        } else if (c == 'l') {
            if ((rc = cli_set_log("render", optarg))) return rc;
        } else {
            return cli_bad_option("render", argv);
        }
    }
    if (argc - optind != 2) return cli_usage("render", "expects MAPS.h5 and OUTDIR");
    if (worst_given && list)
        return cli_usage("render", "--worst and --images choose the images two ways; give "
                                   "one");
    rc = render_run(argv[optind], argv[optind + 1], (int)SN_MIN(worst, 1L << 30), list);
    return rc ? cli_fail() : CLI_OK;
}
