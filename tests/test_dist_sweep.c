/* Sweep expansion (units, ids, grid points, unit configurations) and the
 * per-setting image selection of SPEC section 5, on in-memory datasets. */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/config.h"
#include "dist/sweep.h"
#include "test_dist_fake.h"
#include "testutil.h"

static struct sn_config cfg, ucfg;
static struct ds_dataset ds[2];

/* Three classes (c0..c2 with 8, 9, 10 training images and 6 test images). */
static void base_config(void)
{
    config_defaults(&cfg);
    SN_ASSERT(config_set(&cfg, "data.roots", "[/fake/mv]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.settings", "[single, multi, cross, fewshot]") ==
              SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.methods", "[snarm, patchcore]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.seeds", "[0, 1]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.fewshot_k", "4") == SN_OK);
}

static void axis_add(const char *key, int n, const char *const *values)
{
    struct cfg_axis *ax = &cfg.sweep.axes[cfg.sweep.n_axes++];
    snprintf(ax->key, sizeof ax->key, "%s", key);
    ax->values.n = n;
    for (int i = 0; i < n; i++)
        snprintf(ax->values.v[i], CFG_ITEM, "%s", values[i]);
}

/* ---------------------------------------------------------------------------
 * Expansion */

static void test_expand_counts(void)
{
    static const char *const hybrid[] = {"true", "false"};
    base_config();
    axis_add("matching.hybrid", 2, hybrid);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, ds, 1) == SN_OK);

    /* (3 single + 1 multi + 3 cross + 1 fewshot) x 2 methods x 2 seeds x 2 points */
    TU_CHECK_MSG(s.n_units == 64, "got %d units", s.n_units);
    TU_CHECK(s.n_grid == 2);
    TU_CHECK(!strcmp(s.units[0].id, "mv/single/c0/snarm/seed0/g0"));
    TU_CHECK(!strcmp(s.units[1].id, "mv/single/c0/snarm/seed0/g1"));
    TU_CHECK(!strcmp(s.units[2].id, "mv/single/c0/snarm/seed1/g0"));
    TU_CHECK(!strcmp(s.units[4].id, "mv/single/c0/patchcore/seed0/g0"));
    TU_CHECK(sweep_find(&s, "mv/multi/all/snarm/seed1/g1") >= 0);
    TU_CHECK(sweep_find(&s, "mv/cross/c2/patchcore/seed0/g0") >= 0);
    TU_CHECK(sweep_find(&s, "mv/fewshot/all/snarm/seed0/g0") >= 0);
    TU_CHECK(sweep_find(&s, "mv/multi/c0/snarm/seed0/g0") < 0);

    /* ids are unique and indices follow the order */
    int unique = 1;
    for (int i = 0; i < s.n_units; i++) {
        unique &= s.units[i].index == i;
        for (int j = 0; j < i; j++)
            unique &= strcmp(s.units[i].id, s.units[j].id) != 0;
    }
    TU_CHECK(unique);
    int k = sweep_find(&s, "mv/fewshot/all/snarm/seed0/g0");
    TU_CHECK(k >= 0 && s.units[k].fewshot_k == 4 && s.units[k].cls == -1);
    sweep_free(&s);
}

static void test_grid_points(void)
{
    static const char *const hybrid[] = {"true", "false"}, *const knn[] = {"1", "3", "5"};
    base_config();
    SN_ASSERT(config_set(&cfg, "sweep.settings", "[single]") == SN_OK);
    axis_add("matching.hybrid", 2, hybrid);
    axis_add("bank.knn_k", 3, knn);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, ds, 1) == SN_OK);
    TU_CHECK(s.n_grid == 6);

    /* the first axis varies slowest */
    TU_CHECK(!strcmp(s.grid_desc[0], "matching.hybrid=true bank.knn_k=1"));
    TU_CHECK(!strcmp(s.grid_desc[4], "matching.hybrid=false bank.knn_k=3"));
    int i = sweep_find(&s, "mv/single/c1/snarm/seed1/g4");
    TU_CHECK(i >= 0);
    sweep_unit_config(&s, &s.units[i], &ucfg);
    TU_CHECK(ucfg.matching.hybrid == 0 && ucfg.bank.knn_k == 3);

    /* the unit's configuration is narrowed to the unit */
    TU_CHECK(ucfg.run.seed == 1);
    TU_CHECK(ucfg.data.roots.n == 1 && !strcmp(ucfg.data.roots.v[0], "/fake/mv"));
    TU_CHECK(ucfg.data.classes.n == 1 && !strcmp(ucfg.data.classes.v[0], "c1"));
    TU_CHECK(ucfg.sweep.settings.n == 1 && !strcmp(ucfg.sweep.settings.v[0], "single"));
    TU_CHECK(ucfg.sweep.seeds.n == 1 && ucfg.sweep.seeds.v[0] == 1);
    TU_CHECK(ucfg.sweep.n_axes == 0);
    TU_CHECK(config_validate(&ucfg) == SN_OK);
    sweep_free(&s);
}

/* Rows of an ablation table: several keys per grid point. */
static void test_switches(void)
{
    static const char *const rows[] = {"matching.hybrid=false; bank.knn_k=1",
                                       "matching.hybrid=true; decoder.dilations=[3, 6]"};
    base_config();
    SN_ASSERT(config_set(&cfg, "sweep.settings", "[multi]") == SN_OK);
    axis_add(SWEEP_SWITCHES_KEY, 2, rows);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, ds, 1) == SN_OK);
    TU_CHECK(s.n_grid == 2 && s.n_units == 8);
    sweep_unit_config(&s, &s.units[0], &ucfg);
    TU_CHECK(ucfg.matching.hybrid == 0 && ucfg.bank.knn_k == 1);
    TU_CHECK(ucfg.decoder.dilations.n == 4);
    sweep_unit_config(&s, &s.units[1], &ucfg);
    TU_CHECK(ucfg.matching.hybrid == 1 && ucfg.bank.knn_k == 3);
    TU_CHECK(ucfg.decoder.dilations.n == 2 && ucfg.decoder.dilations.v[1] == 6);
    sweep_free(&s);

    static const char *const bad[] = {"matching.hybrid"}, *const seed[] = {"run.seed=3"};
    base_config();
    axis_add(SWEEP_SWITCHES_KEY, 1, bad);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "not key=value");
    base_config();
    axis_add(SWEEP_SWITCHES_KEY, 1, seed);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "may not set run.seed");
}

static void test_expand_errors(void)
{
    struct sweep s;
    base_config();
    snprintf(cfg.sweep.settings.v[0], CFG_ITEM, "diagonal");
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "unknown setting 'diagonal'");

    base_config();
    snprintf(cfg.sweep.methods.v[1], CFG_ITEM, "padim");
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "unknown method 'padim'");

    base_config();
    SN_ASSERT(config_set(&cfg, "data.classes", "[c0, bolt]") == SN_OK);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "class 'bolt'");

    base_config();
    SN_ASSERT(config_set(&cfg, "sweep.fewshot_k", "9") == SN_OK);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "class c0 of /fake/mv has only 8");

    base_config();
    SN_ASSERT(config_set(&cfg, "data.classes", "[c1]") == SN_OK);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "at least two classes");

    static const char *const roots[] = {"[/x]"}, *const knn[] = {"many"};
    base_config();
    axis_add("data.roots", 1, roots);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "data.roots cannot be a grid axis");
    base_config();
    axis_add("bank.knn_k", 1, knn);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "bank.knn_k = many");

    /* a point that breaks a cross-key rule names the point */
    static const char *const crop[] = {"392", "1000"};
    base_config();
    axis_add("data.crop", 2, crop);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, ds, 1), "grid point g1 (data.crop=1000)");

    /* unit ids start with the dataset name */
    struct ds_dataset twins[2];
    fake_dataset(&twins[0], "mv", 2, 4, 2);
    fake_dataset(&twins[1], "mv", 2, 4, 2);
    base_config();
    SN_ASSERT(config_set(&cfg, "data.roots", "[/a/mv, /b/mv]") == SN_OK);
    TU_CHECK_ERR(sweep_expand(&s, &cfg, twins, 2), "same name 'mv'");
    dataset_free(&twins[0]);
    dataset_free(&twins[1]);
}

/* Two datasets: units of each, and data.classes applied per dataset. */
static void test_two_datasets(void)
{
    base_config();
    SN_ASSERT(config_set(&cfg, "data.roots", "[/fake/mv, /fake/vi]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "data.classes", "[c0, c1]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.settings", "[single]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.methods", "[snarm]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.seeds", "[0]") == SN_OK);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, ds, 2) == SN_OK);
    TU_CHECK(s.n_units == 4);
    TU_CHECK(!strcmp(s.units[2].id, "vi/single/c0/snarm/seed0/g0"));
    TU_CHECK(s.units[2].ds == &ds[1] && s.units[2].dataset == 1);
    sweep_free(&s);
}

/* ---------------------------------------------------------------------------
 * Image selection */

static int count_class(const struct unit_image *v, int n, int cls)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += v[i].cls == cls;
    return k;
}

static struct sweep sel;

static const struct sweep_unit *unit_of(const char *id)
{
    int i = sweep_find(&sel, id);
    TU_CHECK_MSG(i >= 0, "no unit %s", id);
    return i >= 0 ? &sel.units[i] : &sel.units[0];
}

static void test_single(void)
{
    struct unit_images im;
    TU_CHECK(sweep_unit_images(unit_of("mv/single/c1/snarm/seed0/g0"), &ds[0], &im) == 0);
    TU_CHECK(im.n_bank == 9 && count_class(im.bank, im.n_bank, 1) == 9);
    TU_CHECK(im.n_train == 9 && count_class(im.train, im.n_train, 1) == 9);
    TU_CHECK(im.n_test == 6 && count_class(im.test, im.n_test, 1) == 6);
    TU_CHECK(im.bank[8].sample == 8 && im.test[5].sample == 5);
    unit_images_free(&im);
}

/* One bank over every class, one decoder for all, evaluated on every class. */
static void test_multi(void)
{
    struct unit_images im;
    TU_CHECK(sweep_unit_images(unit_of("mv/multi/all/snarm/seed1/g0"), &ds[0], &im) == 0);
    TU_CHECK(im.n_bank == 8 + 9 + 10 && im.n_train == im.n_bank);
    for (int c = 0; c < 3; c++) {
        TU_CHECK(count_class(im.bank, im.n_bank, c) == ds[0].classes[c].n_train);
        TU_CHECK(count_class(im.train, im.n_train, c) == ds[0].classes[c].n_train);
        TU_CHECK(count_class(im.test, im.n_test, c) == 6);
    }
    unit_images_free(&im);
}

/* Leave-one-out: the decoder never sees the held-out class. */
static void test_cross(void)
{
    for (int held = 0; held < 3; held++) {
        char id[128];
        snprintf(id, sizeof id, "mv/cross/c%d/snarm/seed0/g0", held);
        struct unit_images im;
        TU_CHECK(sweep_unit_images(unit_of(id), &ds[0], &im) == SN_OK);
        TU_CHECK_MSG(count_class(im.train, im.n_train, held) == 0,
                     "fold c%d trains on its own class", held);
        int others = 0;
        for (int c = 0; c < 3; c++)
            if (c != held) {
                TU_CHECK(count_class(im.train, im.n_train, c) ==
                         ds[0].classes[c].n_train);
                others += ds[0].classes[c].n_train;
            }
        TU_CHECK(im.n_train == others);
        TU_CHECK(im.n_bank == ds[0].classes[held].n_train &&
                 count_class(im.bank, im.n_bank, held) == im.n_bank);
        TU_CHECK(im.n_test == 6 && count_class(im.test, im.n_test, held) == 6);
        unit_images_free(&im);
    }
}

static int same_images(const struct unit_images *a, const struct unit_images *b)
{
    if (a->n_bank != b->n_bank) return 0;
    for (int i = 0; i < a->n_bank; i++)
        if (a->bank[i].cls != b->bank[i].cls || a->bank[i].sample != b->bank[i].sample)
            return 0;
    return 1;
}

/* k distinct good images per class, the same for bank and decoder. */
static void test_fewshot_k(const struct unit_images *im, int k)
{
    TU_CHECK(im->n_bank == 3 * k && im->n_train == 3 * k && im->n_test == 18);
    for (int c = 0; c < 3; c++) {
        TU_CHECK_MSG(count_class(im->bank, im->n_bank, c) == k, "class c%d: %d shots", c,
                     count_class(im->bank, im->n_bank, c));
        TU_CHECK(count_class(im->test, im->n_test, c) == 6);
    }
    int ok = 1;
    for (int i = 0; i < im->n_bank; i++) {
        ok &= im->train[i].cls == im->bank[i].cls &&
              im->train[i].sample == im->bank[i].sample;
        ok &= im->bank[i].sample < ds[0].classes[im->bank[i].cls].n_train;
        if (i > 0 && im->bank[i].cls == im->bank[i - 1].cls)
            ok &= im->bank[i].sample > im->bank[i - 1].sample; /* distinct, sorted */
    }
    TU_CHECK(ok);
}

static void test_fewshot(void)
{
    struct unit_images a, b, c, p;
    TU_CHECK(sweep_unit_images(unit_of("mv/fewshot/all/snarm/seed0/g0"), &ds[0], &a) ==
             0);
    test_fewshot_k(&a, 4);

    /* drawn from the seed: repeatable, the same for every method */
    TU_CHECK(sweep_unit_images(unit_of("mv/fewshot/all/snarm/seed0/g0"), &ds[0], &b) ==
             0);
    TU_CHECK(same_images(&a, &b));
    TU_CHECK(
        sweep_unit_images(unit_of("mv/fewshot/all/patchcore/seed0/g0"), &ds[0], &p) == 0);
    TU_CHECK(same_images(&a, &p) && p.n_train == 0);
    TU_CHECK(sweep_unit_images(unit_of("mv/fewshot/all/snarm/seed1/g0"), &ds[0], &c) ==
             0);
    test_fewshot_k(&c, 4);
    TU_CHECK_MSG(!same_images(&a, &c), "seeds 0 and 1 drew the same shots");
    unit_images_free(&a);
    unit_images_free(&b);
    unit_images_free(&c);
    unit_images_free(&p);
}

static void test_patchcore_trains_nothing(void)
{
    struct unit_images im;
    TU_CHECK(sweep_unit_images(unit_of("mv/cross/c0/patchcore/seed0/g0"), &ds[0], &im) ==
             0);
    TU_CHECK(im.n_train == 0 && im.n_bank == 8 && im.n_test == 6);
    unit_images_free(&im);
}

/* The record written into each unit folder. */
static void test_selection_tsv(void)
{
    struct unit_images im;
    TU_CHECK(sweep_unit_images(unit_of("mv/fewshot/all/snarm/seed0/g0"), &ds[0], &im) ==
             0);
    char *tsv = unit_images_to_tsv(&im, &ds[0]);
    int lines = 0;
    for (const char *p = tsv; *p; p++)
        lines += *p == '\n';
    TU_CHECK(lines == 1 + im.n_bank + im.n_train + im.n_test);
    TU_CHECK(!strncmp(tsv, "role\tclass\tsplit\tindex\tpath\n", 28));
    TU_CHECK(strstr(tsv, "/fake/") == NULL); /* paths relative to the root */
    char first[128];
    snprintf(first, sizeof first, "bank\tc0\ttrain\t%d\tc0/train/good/%03d.png\n",
             im.bank[0].sample, im.bank[0].sample);
    TU_CHECK(strstr(tsv, first) != NULL);
    sn_free(tsv);
    unit_images_free(&im);
}

/* A class subset is "the dataset" for multi and cross. */
static void test_class_subset(void)
{
    base_config();
    SN_ASSERT(config_set(&cfg, "data.classes", "[c2, c0]") == SN_OK);
    struct sweep s;
    TU_CHECK(sweep_expand(&s, &cfg, ds, 1) == SN_OK);
    TU_CHECK(sweep_find(&s, "mv/single/c1/snarm/seed0/g0") < 0);
    struct unit_images im;
    int i = sweep_find(&s, "mv/cross/c0/snarm/seed0/g0");
    TU_CHECK(i >= 0 && sweep_unit_images(&s.units[i], &ds[0], &im) == SN_OK);
    TU_CHECK(im.n_train == 10 && count_class(im.train, im.n_train, 2) == 10);
    unit_images_free(&im);
    i = sweep_find(&s, "mv/multi/all/snarm/seed0/g0");
    TU_CHECK(i >= 0 && sweep_unit_images(&s.units[i], &ds[0], &im) == SN_OK);
    TU_CHECK(im.n_bank == 18 && count_class(im.bank, im.n_bank, 1) == 0);
    TU_CHECK(im.n_test == 12);
    unit_images_free(&im);
    sweep_free(&s);
}

int main(void)
{
    fake_dataset(&ds[0], "mv", 3, 8, 6);
    fake_dataset(&ds[1], "vi", 2, 5, 4);
    test_expand_counts();
    test_grid_points();
    test_switches();
    test_expand_errors();
    test_two_datasets();

    base_config();
    SN_ASSERT(sweep_expand(&sel, &cfg, ds, 1) == SN_OK);
    test_single();
    test_multi();
    test_cross();
    test_fewshot();
    test_patchcore_trains_nothing();
    test_selection_tsv();
    sweep_free(&sel);
    test_class_subset();

    dataset_free(&ds[0]);
    dataset_free(&ds[1]);
    return tu_finish("test_dist_sweep");
}
