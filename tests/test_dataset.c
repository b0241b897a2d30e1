/*
 * Unit tests of data/dataset.c on small layouts built in a temporary folder:
 * MVTec AD, MVTec 3D-AD and VisA, their counts and order, empty masks, and
 * a broken dataset whose every problem must appear in one error message.
 */
#define _POSIX_C_SOURCE 200809L
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "data/dataset.h"
#include "data/image.h"
#include "testutil.h"

static const char *root;

/* Write a w x h PNG (grey value v; 3 channels unless grey) at root/rel. */
static void put_png(const char *rel, int w, int h, int v, int grey)
{
    char path[4200], dir[4200];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    SN_ASSERT(sn_mkdirs(dirname(dir)) == SN_OK);
    int ch = grey ? 1 : 3;
    uint8_t *pix = sn_malloc((size_t)w * h * ch);
    memset(pix, v, (size_t)w * h * ch);
    SN_ASSERT(image_write_png(path, pix, w, h, ch) == SN_OK);
    sn_free(pix);
}

static void put_text(const char *rel, const char *text)
{
    char path[4200], dir[4200];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    SN_ASSERT(sn_mkdirs(dirname(dir)) == SN_OK);
    SN_ASSERT(sn_write_file_atomic(path, text, strlen(text)) == SN_OK);
}

static const char *sub(const char *name)
{
    static char buf[4][4200];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, 4200, "%s/%s", root, name);
    return p;
}

static int ends_with(const char *s, const char *tail)
{
    return s && sn_ends_with(s, tail);
}

/* ------------------------------------------------------------------------ */

static void build_mvtec(void)
{
    for (int i = 0; i < 3; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "mv/a_cls/train/good/%03d.png", 2 - i);
        put_png(rel, 8, 6, 100 + i, 0);
    }
    put_png("mv/a_cls/train/good/003.PNG", 8, 6, 1, 1); /* upper-case extension counts */
    put_text("mv/a_cls/train/good/notes.txt", "not an image");
    put_text("mv/a_cls/train/good/.hidden.png", "hidden files are skipped");
    put_png("mv/a_cls/test/good/000.png", 8, 6, 1, 0);
    put_png("mv/a_cls/test/good/001.png", 8, 6, 1, 0);
    put_png("mv/a_cls/test/crack/000.png", 8, 6, 1, 0);
    put_png("mv/a_cls/test/crack/001.png", 8, 6, 1, 0);
    put_png("mv/a_cls/test/dent/000.png", 8, 6, 1, 0);
    put_png("mv/a_cls/ground_truth/crack/000_mask.png", 8, 6, 255, 1);
    put_png("mv/a_cls/ground_truth/crack/001_mask.png", 8, 6, 0, 1); /* empty mask */
    put_png("mv/a_cls/ground_truth/dent/000_mask.png", 8, 6, 1, 1);  /* 0/1 mask */
    put_png("mv/b_cls/train/good/000.png", 5, 5, 7, 0);
    put_png("mv/b_cls/train/good/001.png", 5, 5, 7, 0);
    put_png("mv/b_cls/test/good/000.png", 5, 5, 7, 0);
    put_text("mv/license.txt", "a file at the root is not a class");
    SN_ASSERT(sn_mkdirs(sub("mv/not_a_class/other")) == SN_OK);
}

static void check_mvtec(void)
{
    build_mvtec();
    struct ds_dataset ds;
    int st = dataset_open(sub("mv/"), "auto", &ds);
    TU_CHECK_MSG(st == SN_OK, "mvtec: %s", sn_last_error());
    if (st != SN_OK) return;
    TU_CHECK(!strcmp(ds.format, "mvtec") && !strcmp(ds.name, "mv"));
    TU_CHECK(ds.n_classes == 2);
    TU_CHECK(!strcmp(ds.classes[0].name, "a_cls") &&
             !strcmp(ds.classes[1].name, "b_cls"));

    const struct ds_class *a = dataset_class(&ds, "a_cls");
    TU_CHECK(a && a->n_train == 4 && a->n_test == 5);
    TU_CHECK(a && a->n_test_good == 2 && a->n_test_defect == 3 && a->n_empty_masks == 1);
    if (a) {
        /* Sorted by name: 000, 001, 002, 003.PNG; test by folder then name. */
        TU_CHECK(ends_with(a->train[0].path, "/train/good/000.png"));
        TU_CHECK(ends_with(a->train[3].path, "/train/good/003.PNG"));
        TU_CHECK(!strcmp(a->test[0].defect, "crack") && a->test[0].label == 1);
        TU_CHECK(ends_with(a->test[0].mask_path, "ground_truth/crack/000_mask.png"));
        TU_CHECK(a->test[0].empty_mask == 0 && a->test[1].empty_mask == 1);
        TU_CHECK(!strcmp(a->test[2].defect, "dent") && a->test[2].empty_mask == 0);
        TU_CHECK(!strcmp(a->test[3].defect, "good") && a->test[3].mask_path == NULL &&
                 a->test[3].label == 0);
        const char *types[8];
        int n = dataset_defect_types(a, types, 8);
        TU_CHECK(n == 2 && !strcmp(types[0], "crack") && !strcmp(types[1], "dent"));
    }
    const struct ds_class *b = dataset_class(&ds, "b_cls");
    TU_CHECK(b && b->n_train == 2 && b->n_test_good == 1 && b->n_test_defect == 0);
    TU_CHECK(dataset_class(&ds, "not_a_class") == NULL);
    dataset_free(&ds);
    TU_CHECK(dataset_open_decoded(sub("mv/"), "auto", &ds) == SN_OK && ds.n_classes == 2);
    dataset_free(&ds);
}

/* Every problem of a broken dataset, listed in one message. */
static void check_problems(void)
{
    put_png("bad/x/train/good/000.png", 8, 6, 1, 0);
    put_text("bad/x/train/good/001.png", "garbage, not a PNG");
    put_png("bad/x/train/good/002.png", 64, 64, 1, 0); /* header whole, data cut */
    SN_ASSERT(truncate(sub("bad/x/train/good/002.png"), 45) == 0);
    put_png("bad/x/test/hole/000.png", 8, 6, 1, 0); /* mask missing */
    put_png("bad/x/test/hole/001.png", 8, 6, 1, 0); /* mask of another size */
    put_png("bad/x/ground_truth/hole/001_mask.png", 6, 6, 255, 1);
    put_png("bad/x/test/hole/002.png", 8, 6, 1, 0); /* mask unreadable */
    put_text("bad/x/ground_truth/hole/002_mask.png", "garbage mask");
    SN_ASSERT(sn_mkdirs(sub("bad/y/train/good")) == SN_OK); /* empty train split */
    put_png("bad/y/test/good/000.png", 4, 4, 1, 0);

    struct ds_dataset ds;
    int st = dataset_open(sub("bad"), "mvtec", &ds);
    TU_CHECK_ERR(st, "has 5 problems");
    const char *msg = sn_last_error();
    printf("broken dataset message:\n%s\n", msg);
    TU_CHECK_ERR(st, "missing mask: ");
    TU_CHECK_ERR(st, "bad/x/ground_truth/hole/000_mask.png (for image ");
    TU_CHECK_ERR(st, "mask size 6 x 6 differs from image size 8 x 6: ");
    TU_CHECK_ERR(st, "bad/x/ground_truth/hole/001_mask.png");
    TU_CHECK_ERR(st, "unreadable image: ");
    TU_CHECK_ERR(st, "bad/x/train/good/001.png is not a PNG or JPEG");
    TU_CHECK_ERR(st, "unreadable mask: ");
    TU_CHECK_ERR(st, "002_mask.png is not a PNG or JPEG");
    TU_CHECK_ERR(st, "empty split: no images in ");
    TU_CHECK_ERR(st, "bad/y/train/good");
    TU_CHECK(ds.classes == NULL && ds.n_classes == 0);
    TU_CHECK(!strstr(msg, "train/good/002.png"));

    /* Decoding every image adds the cut one to the same list. */
    st = dataset_open_decoded(sub("bad"), "mvtec", &ds);
    TU_CHECK_ERR(st, "has 6 problems");
    TU_CHECK_ERR(st, "undecodable image: ");
    TU_CHECK_ERR(st, "bad/x/train/good/002.png");
    TU_CHECK_ERR(st, "bad/x/train/good/001.png is not a PNG or JPEG");
    TU_CHECK_ERR(st, "empty split: no images in ");
    TU_CHECK(ds.classes == NULL && ds.n_classes == 0);

    /* Other user errors. */
    TU_CHECK_ERR(dataset_open(sub("absent"), "auto", &ds), "is not a folder");
    TU_CHECK_ERR(dataset_open(sub("mv"), "kitti", &ds), "unknown dataset format 'kitti'");
    SN_ASSERT(sn_mkdirs(sub("empty_root/stuff")) == SN_OK);
    TU_CHECK_ERR(dataset_open(sub("empty_root"), "auto", &ds), "has no class folders");
}

static void check_mvtec3d(void)
{
    put_png("m3/cookie/train/good/rgb/000.png", 6, 6, 50, 0);
    put_png("m3/cookie/train/good/rgb/001.png", 6, 6, 50, 0);
    put_png("m3/cookie/train/good/xyz/000.png", 6, 6, 50, 0); /* ignored */
    put_png("m3/cookie/test/good/rgb/000.png", 6, 6, 50, 0);
    put_png("m3/cookie/test/good/gt/000.png", 6, 6, 0, 1);
    put_png("m3/cookie/test/hole/rgb/000.png", 6, 6, 50, 0);
    put_png("m3/cookie/test/hole/gt/000.png", 6, 6, 255, 1);
    put_png("m3/cookie/test/crack/rgb/000.png", 6, 6, 50, 0);
    put_png("m3/cookie/test/crack/gt/000.png", 6, 6, 0, 1);
    struct ds_dataset ds;
    int st = dataset_open(sub("m3"), "auto", &ds);
    TU_CHECK_MSG(st == SN_OK, "mvtec3d: %s", sn_last_error());
    if (st != SN_OK) return;
    TU_CHECK(!strcmp(ds.format, "mvtec3d") && ds.n_classes == 1);
    const struct ds_class *c = &ds.classes[0];
    TU_CHECK(c->n_train == 2 && c->n_test_good == 1 && c->n_test_defect == 2);
    TU_CHECK(c->n_empty_masks == 1);
    TU_CHECK(ends_with(c->test[2].mask_path, "m3/cookie/test/hole/gt/000.png"));
    TU_CHECK(!strcmp(c->test[0].defect, "crack") && c->test[0].empty_mask);
    dataset_free(&ds);

    /* The same folder read as plain MVTec finds no images in train/good. */
    TU_CHECK_ERR(dataset_open(sub("m3"), "mvtec", &ds), "empty split");
}

static void check_visa(void)
{
    put_png("visa/candle/Data/Images/Normal/001.JPG.png", 7, 5, 10, 0);
    put_png("visa/candle/Data/Images/Normal/000.png", 7, 5, 10, 0);
    put_png("visa/candle/Data/Images/Normal/002.png", 7, 5, 10, 0);
    put_png("visa/candle/Data/Images/Anomaly/000.png", 7, 5, 10, 0);
    put_png("visa/candle/Data/Masks/Anomaly/000.png", 7, 5, 3, 1); /* class index 3 */
    put_png("visa/cashew/Data/Images/Normal/000.png", 4, 4, 10, 0);
    put_png("visa/cashew/Data/Images/Normal/001.png", 4, 4, 10, 0);
    put_png("visa/cashew/Data/Images/Anomaly/000.png", 4, 4, 10, 0);
    put_png("visa/cashew/Data/Masks/Anomaly/000.png", 4, 4, 0, 1);
    put_text("visa/split_csv/1cls.csv",
             "object,split,label,image,mask\n"
             "candle,train,normal,candle/Data/Images/Normal/001.JPG.png,\n"
             "candle,train,normal,candle/Data/Images/Normal/000.png,\n"
             "candle,test,normal,candle/Data/Images/Normal/002.png,\n"
             "candle,test,anomaly,candle/Data/Images/Anomaly/000.png,"
             "candle/Data/Masks/Anomaly/000.png\n"
             "cashew,train,normal,cashew/Data/Images/Normal/000.png,\n"
             "cashew,test,normal,cashew/Data/Images/Normal/001.png,\r\n"
             "cashew,test,anomaly,cashew/Data/Images/Anomaly/000.png,"
             "cashew/Data/Masks/Anomaly/000.png\r\n");
    struct ds_dataset ds;
    int st = dataset_open(sub("visa"), "auto", &ds);
    TU_CHECK_MSG(st == SN_OK, "visa: %s", sn_last_error());
    if (st != SN_OK) return;
    TU_CHECK(!strcmp(ds.format, "visa") && ds.n_classes == 2);
    TU_CHECK(!strcmp(ds.classes[0].name, "candle") &&
             !strcmp(ds.classes[1].name, "cashew"));
    const struct ds_class *c = &ds.classes[0];
    TU_CHECK(c->n_train == 2 && c->n_test_good == 1 && c->n_test_defect == 1);
    TU_CHECK(ends_with(c->train[0].path, "Normal/000.png"));
    TU_CHECK(c->n_empty_masks == 0 && !strcmp(c->test[0].defect, "anomaly"));
    TU_CHECK(ds.classes[1].n_empty_masks == 1 && ds.classes[1].n_test == 2);
    dataset_free(&ds);

    /* A missing mask file and an anomaly without a mask are both reported. */
    put_text("visa/split_csv/1cls.csv",
             "object,split,label,image,mask\n"
             "candle,train,normal,candle/Data/Images/Normal/000.png,\n"
             "candle,test,anomaly,candle/Data/Images/Anomaly/000.png,candle/none.png\n"
             "candle,test,anomaly,candle/Data/Images/Anomaly/000.png,\n"
             "candle,validation,normal,candle/Data/Images/Normal/000.png,\n");
    st = dataset_open(sub("visa"), "visa", &ds);
    TU_CHECK_ERR(st, "has 3 problems");
    TU_CHECK_ERR(st, "missing mask: ");
    TU_CHECK_ERR(st, "visa/candle/none.png");
    TU_CHECK_ERR(st, "1cls.csv line 4 names none");
    TU_CHECK_ERR(st, "line 5: split 'validation'");
    put_text("visa/split_csv/1cls.csv", "object,label,image\n");
    TU_CHECK_ERR(dataset_open(sub("visa"), "visa", &ds), "header has no column 'split'");
}

int main(void)
{
    root = tu_tmpdir("dataset");
    check_mvtec();
    check_problems();
    check_mvtec3d();
    check_visa();
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_dataset");
}
