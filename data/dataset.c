/*
 * dataset.c - listing and checking MVTec AD, MVTec 3D-AD and VisA layouts.
 *
 * Listing builds the classes and their samples; checking then reads every
 * image header and every mask and collects each problem it meets, so that a
 * user fixes a broken dataset in one round rather than one file at a time.
 */
#define _GNU_SOURCE
#include "dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "core/log.h"
#include "image.h"

/* Paths are built in PATH_MAX buffers; Linux cannot open a longer one. */
#define DS_PATH 4096

/* The error message holds at most this much of the problem list; the rest
 * goes to the log so that nothing is lost. */
#define DS_MSG_CAP 3400

struct ds_problems {
    char msg[DS_MSG_CAP + 128];
    size_t len;
    int n, n_logged;
};

static void problem_add(struct ds_problems *p, const char *fmt, ...) SN_PRINTF(2, 3);

static void problem_add(struct ds_problems *p, const char *fmt, ...)
{
    char line[2 * DS_PATH + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    p->n++;
    if (p->len + strlen(line) + 4 < DS_MSG_CAP && !p->n_logged) {
        p->len +=
            (size_t)snprintf(p->msg + p->len, sizeof p->msg - p->len, "\n  %s", line);
    } else {
        p->n_logged++;
        log_error("dataset problem: %s", line);
    }
}

static void path_fmt(char *out, const char *fmt, ...) SN_PRINTF(2, 3);

static void path_fmt(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, DS_PATH, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= DS_PATH)
        sn_fatal("path longer than %d bytes: %.200s...", DS_PATH, out);
}

/* ------------------------------------------------------------------------ */
/* Directory listing */

struct name_list {
    int n, cap;
    char **v;
};

static void names_push(struct name_list *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = sn_realloc(l->v, sizeof(char *) * (size_t)l->cap);
    }
    l->v[l->n++] = sn_strdup(s);
}

static void names_free(struct name_list *l)
{
    for (int i = 0; i < l->n; i++)
        sn_free(l->v[i]);
    sn_free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") ||
           !strcasecmp(dot, ".jpeg");
}

/* Sorted entries of dir: sub-folders (want_dirs) or image files. Hidden
 * entries are skipped. A missing folder gives an empty list. */
static void dir_list(const char *dir, int want_dirs, struct name_list *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[DS_PATH];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (sn_path_join(path, sizeof path, dir, e->d_name) != SN_OK) continue;
        if (want_dirs ? sn_dir_exists(path)
                      : is_image_name(e->d_name) && !sn_dir_exists(path))
            names_push(out, e->d_name);
    }
    closedir(d);
    qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
}

/* ------------------------------------------------------------------------ */
/* Samples */

struct sample_list {
    int n, cap;
    struct ds_sample *v;
};

static void samples_push(struct sample_list *l, const char *path, const char *mask,
                         const char *defect)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = sn_realloc(l->v, sizeof(struct ds_sample) * (size_t)l->cap);
    }
    struct ds_sample *s = &l->v[l->n++];
    s->path = sn_strdup(path);
    s->mask_path = mask ? sn_strdup(mask) : NULL;
    s->defect = sn_strdup(defect);
    s->label = strcmp(defect, "good") != 0;
    s->empty_mask = 0;
}

static void sample_free(struct ds_sample *s)
{
    sn_free(s->path);
    sn_free(s->mask_path);
    sn_free(s->defect);
}

static void class_free(struct ds_class *c)
{
    for (int i = 0; i < c->n_train; i++)
        sample_free(&c->train[i]);
    for (int i = 0; i < c->n_test; i++)
        sample_free(&c->test[i]);
    sn_free(c->train);
    sn_free(c->test);
    sn_free(c->name);
    memset(c, 0, sizeof *c);
}

/* "a/b/000.png" -> "000" */
static void file_stem(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s", name);
    char *dot = strrchr(out, '.');
    if (dot) *dot = 0;
}

/* ------------------------------------------------------------------------ */
/* MVTec AD and MVTec 3D-AD */

/* The images of one split folder, with their masks for defect folders. */
static void mvtec_add_folder(const char *cls_dir, const char *split, const char *defect,
                             int is3d, struct sample_list *out)
{
    char dir[DS_PATH], path[DS_PATH], mask[DS_PATH], stem[1024];
    path_fmt(dir, "%s/%s/%s%s", cls_dir, split, defect, is3d ? "/rgb" : "");
    struct name_list files;
    dir_list(dir, 0, &files);
    for (int i = 0; i < files.n; i++) {
        path_fmt(path, "%s/%s", dir, files.v[i]);
        file_stem(files.v[i], stem, sizeof stem);
        int good = !strcmp(defect, "good");
        if (is3d)
            path_fmt(mask, "%s/%s/%s/gt/%s.png", cls_dir, split, defect, stem);
        else
            path_fmt(mask, "%s/ground_truth/%s/%s_mask.png", cls_dir, defect, stem);
        samples_push(out, path, good ? NULL : mask, defect);
    }
    names_free(&files);
}

static void mvtec_list_class(const char *root, const char *name, int is3d,
                             struct ds_class *c, struct ds_problems *p)
{
    char cls_dir[DS_PATH], test_dir[DS_PATH];
    path_fmt(cls_dir, "%s/%s", root, name);
    path_fmt(test_dir, "%s/test", cls_dir);

    /* Training split: good images only. */
    struct sample_list train = {0}, test = {0};
    mvtec_add_folder(cls_dir, "train", "good", is3d, &train);

    /* Test split: one folder per defect type, plus good. */
    struct name_list defects;
    dir_list(test_dir, 1, &defects);
    for (int i = 0; i < defects.n; i++)
        mvtec_add_folder(cls_dir, "test", defects.v[i], is3d, &test);
    names_free(&defects);

    c->name = sn_strdup(name);
    c->train = train.v;
    c->n_train = train.n;
    c->test = test.v;
    c->n_test = test.n;
    if (!train.n)
        problem_add(p, "empty split: no images in %s/train/good%s", cls_dir,
                    is3d ? "/rgb" : "");
    if (!test.n)
        problem_add(p, "empty split: no images in %s/test/*%s", cls_dir,
                    is3d ? "/rgb" : "");
}

/* Class folders: sub-folders of root holding train/ or test/. */
static void mvtec_class_names(const char *root, struct name_list *classes)
{
    struct name_list all;
    char a[DS_PATH], b[DS_PATH];
    dir_list(root, 1, &all);
    memset(classes, 0, sizeof *classes);
    for (int i = 0; i < all.n; i++) {
        path_fmt(a, "%s/%s/train", root, all.v[i]);
        path_fmt(b, "%s/%s/test", root, all.v[i]);
        if (sn_dir_exists(a) || sn_dir_exists(b)) names_push(classes, all.v[i]);
    }
    names_free(&all);
}

static int mvtec_open(struct ds_dataset *ds, int is3d, struct ds_problems *p)
{
    struct name_list names;
    mvtec_class_names(ds->root, &names);
    if (!names.n) {
        names_free(&names);
        return sn_error("dataset root %s has no class folders (sub-folders with train/ "
                        "or test/)",
                        ds->root);
    }
    ds->n_classes = names.n;
    ds->classes = sn_calloc((size_t)names.n, sizeof(struct ds_class));
    for (int i = 0; i < names.n; i++)
        mvtec_list_class(ds->root, names.v[i], is3d, &ds->classes[i], p);
    names_free(&names);
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* VisA (split_csv/1cls.csv) */

struct visa_row {
    char *object, *split, *label, *image, *mask;
};

/* Split one CSV line in place; VisA's files hold no quoted fields. */
static int csv_split(char *line, char **f, int cap)
{
    int n = 0;
    char *s = line;
    for (;;) {
        if (n == cap) return -1;
        f[n++] = s;
        char *c = strchr(s, ',');
        if (!c) break;
        *c = 0;
        s = c + 1;
    }
    char *end = f[n - 1] + strlen(f[n - 1]);
    while (end > f[n - 1] && (end[-1] == '\r' || end[-1] == '\n'))
        *--end = 0;
    return n;
}

static int visa_columns(char *header, const char *csv, int col[5])
{
    static const char *want[5] = {"object", "split", "label", "image", "mask"};
    char *f[32];
    int n = csv_split(header, f, 32);
    for (int k = 0; k < 5; k++) {
        col[k] = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(f[i], want[k])) col[k] = i;
        if (col[k] < 0)
            return sn_error("%s: header has no column '%s' (expected object,split,label,"
                            "image,mask)",
                            csv, want[k]);
    }
    return SN_OK;
}

static int cmp_sample_path(const void *a, const void *b)
{
    return strcmp(((const struct ds_sample *)a)->path,
                  ((const struct ds_sample *)b)->path);
}

static struct ds_class *visa_class(struct ds_dataset *ds, const char *name)
{
    for (int i = 0; i < ds->n_classes; i++)
        if (!strcmp(ds->classes[i].name, name)) return &ds->classes[i];
    ds->classes =
        sn_realloc(ds->classes, sizeof(struct ds_class) * (size_t)(ds->n_classes + 1));
    struct ds_class *c = &ds->classes[ds->n_classes++];
    memset(c, 0, sizeof *c);
    c->name = sn_strdup(name);
    return c;
}

static void class_push(struct ds_class *c, int test, const char *img, const char *mask,
                       const char *defect)
{
    struct sample_list l = {test ? c->n_test : c->n_train, test ? c->n_test : c->n_train,
                            test ? c->test : c->train};
    samples_push(&l, img, mask, defect);
    if (test) {
        c->test = l.v;
        c->n_test = l.n;
    } else {
        c->train = l.v;
        c->n_train = l.n;
    }
}

/* One data row of the CSV into its class. */
static void visa_row_add(struct ds_dataset *ds, char **f, const int col[5],
                         const char *csv, int lineno, struct ds_problems *p)
{
    const char *split = f[col[1]], *label = f[col[2]], *mask = f[col[4]];
    int test = !strcmp(split, "test"), bad = !strcmp(label, "anomaly");
    if (!test && strcmp(split, "train")) {
        problem_add(p, "%s line %d: split '%s' is neither train nor test", csv, lineno,
                    split);
        return;
    }
    if (!bad && strcmp(label, "normal")) {
        problem_add(p, "%s line %d: label '%s' is neither normal nor anomaly", csv,
                    lineno, label);
        return;
    }
    if (!test && bad) {
        problem_add(p, "%s line %d: an anomalous image in the train split", csv, lineno);
        return;
    }
    char img[DS_PATH], m[DS_PATH];
    path_fmt(img, "%s/%s", ds->root, f[col[3]]);
    path_fmt(m, "%s/%s", ds->root, mask);
    if (bad && !mask[0]) {
        problem_add(p, "missing mask: %s line %d names none (for image %s)", csv, lineno,
                    img);
        return;
    }
    class_push(visa_class(ds, f[col[0]]), test, img, bad ? m : NULL,
               bad ? "anomaly" : "good");
}

static int cmp_class_name(const void *a, const void *b)
{
    return strcmp(((const struct ds_class *)a)->name, ((const struct ds_class *)b)->name);
}

static int visa_open(struct ds_dataset *ds, struct ds_problems *p)
{
    char csv[DS_PATH];
    path_fmt(csv, "%s/split_csv/1cls.csv", ds->root);
    size_t len;
    char *text = sn_read_file(csv, &len);
    if (!text) return SN_EUSER;

    /* Header, then one image per line. */
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int col[5], lineno = 1;
    if (!line || visa_columns(line, csv, col) != SN_OK) {
        sn_free(text);
        return line ? SN_EUSER : sn_error("%s is empty", csv);
    }
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *f[32];
        lineno++;
        if (!line[0] || !strcmp(line, "\r")) continue;
        int n = csv_split(line, f, 32);
        int need = SN_MAX(SN_MAX(col[0], col[1]), SN_MAX(SN_MAX(col[2], col[3]), col[4]));
        if (n <= need || strchr(line, '"')) {
            problem_add(p, "%s line %d: malformed row", csv, lineno);
            continue;
        }
        visa_row_add(ds, f, col, csv, lineno, p);
    }
    sn_free(text);

    /* Same order as the folder layouts: classes and images by name. */
    qsort(ds->classes, (size_t)ds->n_classes, sizeof(struct ds_class), cmp_class_name);
    for (int i = 0; i < ds->n_classes; i++) {
        struct ds_class *c = &ds->classes[i];
        qsort(c->train, (size_t)c->n_train, sizeof(struct ds_sample), cmp_sample_path);
        qsort(c->test, (size_t)c->n_test, sizeof(struct ds_sample), cmp_sample_path);
        if (!c->n_train)
            problem_add(p, "empty split: %s has no train images of %s", csv, c->name);
        if (!c->n_test)
            problem_add(p, "empty split: %s has no test images of %s", csv, c->name);
    }
    if (!ds->n_classes) problem_add(p, "%s lists no images", csv);
    return SN_OK;
}

/* ------------------------------------------------------------------------ */
/* Checking */

/* The image's header, or with decode the whole image; for a defective one,
 * the mask: present, readable, of the image's size; an all-zero mask is
 * recorded, not refused. */
static void sample_check(struct ds_sample *s, int decode, struct ds_problems *p)
{
    int w, h, mw, mh;
    if (decode) {
        struct sn_image img;
        if (image_load(s->path, &img) != SN_OK) {
            problem_add(p, "undecodable image: %s", sn_last_error());
            return;
        }
        w = img.w;
        h = img.h;
        image_free(&img);
    } else if (image_size(s->path, &w, &h) != SN_OK) {
        problem_add(p, "unreadable image: %s", sn_last_error());
        return;
    }
    if (!s->mask_path) return;
    if (!sn_file_exists(s->mask_path)) {
        problem_add(p, "missing mask: %s (for image %s)", s->mask_path, s->path);
        return;
    }
    uint8_t *m;
    if (mask_load(s->mask_path, &mw, &mh, &m) != SN_OK) {
        problem_add(p, "unreadable mask: %s", sn_last_error());
        return;
    }
    if (mw != w || mh != h) {
        problem_add(p, "mask size %d x %d differs from image size %d x %d: %s (image %s)",
                    mw, mh, w, h, s->mask_path, s->path);
    } else {
        long any = 0;
        for (long i = 0; i < (long)w * h && !any; i++)
            any = m[i];
        s->empty_mask = !any;
    }
    sn_free(m);
}

static void class_check(struct ds_class *c, int decode, struct ds_problems *p)
{
    for (int i = 0; i < c->n_train; i++)
        sample_check(&c->train[i], decode, p);
    c->n_test_good = c->n_test_defect = c->n_empty_masks = 0;
    for (int i = 0; i < c->n_test; i++) {
        sample_check(&c->test[i], decode, p);
        c->n_test_good += !c->test[i].label;
        c->n_test_defect += c->test[i].label;
        c->n_empty_masks += c->test[i].empty_mask;
    }
}

/* ------------------------------------------------------------------------ */

static const char *detect_format(const char *root)
{
    char path[DS_PATH];
    path_fmt(path, "%s/split_csv/1cls.csv", root);
    if (sn_file_exists(path)) return "visa";
    struct name_list classes;
    mvtec_class_names(root, &classes);
    int is3d = 0;
    for (int i = 0; i < classes.n && !is3d; i++) {
        path_fmt(path, "%s/%s/train/good/rgb", root, classes.v[i]);
        is3d = sn_dir_exists(path);
    }
    names_free(&classes);
    return is3d ? "mvtec3d" : "mvtec";
}

static void root_basename(const char *root, char *out, size_t cap)
{
    char tmp[DS_PATH];
    path_fmt(tmp, "%s", root);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = 0;
    const char *slash = strrchr(tmp, '/');
    snprintf(out, cap, "%s", slash && slash[1] ? slash + 1 : tmp);
}

static int dataset_list(struct ds_dataset *ds, const char *format, struct ds_problems *p)
{
    if (!strcmp(format, "auto")) format = detect_format(ds->root);
    snprintf(ds->format, sizeof ds->format, "%s", format);
    if (!strcmp(format, "mvtec")) return mvtec_open(ds, 0, p);
    if (!strcmp(format, "mvtec3d")) return mvtec_open(ds, 1, p);
    if (!strcmp(format, "visa")) return visa_open(ds, p);
    return sn_error("unknown dataset format '%s' (auto, mvtec, mvtec3d or visa)", format);
}

static int open_checked(const char *root, const char *format, int decode,
                        struct ds_dataset *ds)
{
    char base[1024];
    memset(ds, 0, sizeof *ds);
    if (!sn_dir_exists(root)) return sn_error("dataset root %s is not a folder", root);
    ds->root = sn_strdup(root);
    root_basename(root, base, sizeof base);
    ds->name = sn_strdup(base);

    /* List the layout, then check every file, collecting all problems. */
    struct ds_problems *p = sn_calloc(1, sizeof *p);
    int st = dataset_list(ds, format, p);
    for (int i = 0; st == SN_OK && i < ds->n_classes; i++)
        class_check(&ds->classes[i], decode, p);
    if (st == SN_OK && p->n) {
        st = sn_error("dataset %s (%s layout) has %d problem%s:%s%s", root, ds->format,
                      p->n, p->n == 1 ? "" : "s", p->msg,
                      p->n_logged ? "\n  ... and more, each logged above" : "");
    }
    sn_free(p);
    if (st != SN_OK) dataset_free(ds);
    return st;
}

int dataset_open(const char *root, const char *format, struct ds_dataset *ds)
{
    return open_checked(root, format, 0, ds);
}

int dataset_open_decoded(const char *root, const char *format, struct ds_dataset *ds)
{
    return open_checked(root, format, 1, ds);
}

void dataset_free(struct ds_dataset *ds)
{
    for (int i = 0; i < ds->n_classes; i++)
        class_free(&ds->classes[i]);
    sn_free(ds->classes);
    sn_free(ds->root);
    sn_free(ds->name);
    memset(ds, 0, sizeof *ds);
}

const struct ds_class *dataset_class(const struct ds_dataset *ds, const char *name)
{
    for (int i = 0; i < ds->n_classes; i++)
        if (!strcmp(ds->classes[i].name, name)) return &ds->classes[i];
    return NULL;
}

int dataset_defect_types(const struct ds_class *c, const char **names, int cap)
{
    int n = 0;
    for (int i = 0; i < c->n_test; i++) {
        const char *d = c->test[i].defect;
        int seen = !c->test[i].label;
        for (int k = 0; k < n && !seen; k++)
            seen = !strcmp(names[k], d);
        if (seen) continue;
        if (n == cap) break;
        names[n++] = d;
    }
    qsort((void *)names, (size_t)n, sizeof(char *), cmp_str);
    return n;
}
