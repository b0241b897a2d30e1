/* Run folders: config.yaml and --resume, unit markers, detection of partial
 * and corrupt outputs, the index. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/config.h"
#include "dist/runstate.h"
#include "test_dist_fake.h"
#include "testutil.h"

static struct sn_config cfg;
static struct ds_dataset ds;
static struct sweep s;
static char run[4096], dir[4096];

static void put(const char *rel, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    TU_CHECK(sn_mkdirs(path) == SN_OK);
    *slash = '/';
    TU_CHECK(sn_write_file_atomic(path, text, strlen(text)) == SN_OK);
}

static char *get(const char *rel)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return sn_read_file(path, NULL);
}

static int exists(const char *rel)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return access(path, F_OK) == 0;
}

static enum unit_state check(const struct sweep_unit *u, char *why)
{
    return runstate_unit_check(dir, u, NULL, NULL, why, 256);
}

static void test_open(void)
{
    const char *cfg0 = "# from a.yaml\nrun:\n  seed: 0\n  threads: 0\n  log: info\n"
                       "bank:\n  knn_k: 3\nsweep:\n  grid:\n    switches: [a=1]\n";
    TU_CHECK(runstate_open(run, cfg0, 0) == SN_OK);
    TU_CHECK_ERR(runstate_open(run, cfg0, 0), "pass --resume");
    TU_CHECK(runstate_open(run, cfg0, 1) == SN_OK);
    TU_CHECK(runstate_check_config(run, cfg0) == SN_OK);
    /* another file name in the header, other threads and log level: the
     * same experiment */
    TU_CHECK(runstate_open(run,
                           "# from elsewhere/b.yaml, another version\nrun:\n  seed: 0\n"
                           "  threads: 2\n  log: debug\nbank:\n  knn_k: 3\n"
                           "sweep:\n  grid:\n    switches: [a=1]\n",
                           1) == SN_OK);
    /* a key that changes results is named with both values */
    TU_CHECK_ERR(runstate_open(run,
                               "run:\n  seed: 0\n  threads: 0\n  log: info\nbank:\n"
                               "  knn_k: 1\nsweep:\n  grid:\n    switches: [a=1]\n",
                               1),
                 "bank.knn_k was '3' and is now '1'");
    TU_CHECK_ERR(runstate_check_config(run, "run:\n  seed: 0\nbank:\n  knn_k: 3\n"
                                            "sweep:\n  grid:\n    switches: [a=2]\n"),
                 "sweep.grid.switches was '[a=1]' and is now '[a=2]'");
    TU_CHECK_ERR(runstate_check_config(run, "run:\n  seed: 0\nbank:\n  knn_k: 3\n"),
                 "'sweep' is only in the stored configuration");
    TU_CHECK_ERR(runstate_check_config(run, "run:\n  seed: 0\n  name: x\nbank:\n"),
                 "the current configuration has 'run.name' where the stored one has 'bank'");
    /* a folder holding units but no config.yaml is not taken over, nor is a
     * folder of other files; an empty one is */
    char other[4200], path2[4300];
    snprintf(other, sizeof other, "%s-other", run);
    snprintf(path2, sizeof path2, "%s/units/x", other);
    TU_CHECK(sn_mkdirs(path2) == SN_OK);
    TU_CHECK_ERR(runstate_open(other, cfg0, 1), "holds units/x but no config.yaml");
    TU_CHECK_ERR(runstate_check_config(other, cfg0), "holds units/x but no config.yaml");
    TU_CHECK(rmdir(path2) == 0);
    snprintf(path2, sizeof path2, "%s/notes.txt", other);
    TU_CHECK(sn_write_file_atomic(path2, "x", 1) == SN_OK);
    TU_CHECK_ERR(runstate_open(other, cfg0, 0), "holds notes.txt but no config.yaml");
    TU_CHECK(unlink(path2) == 0);
    char cache[4300]; /* a cache seeded by hand does not count */
    snprintf(cache, sizeof cache, "%s/cache/bb", other);
    TU_CHECK(sn_mkdirs(cache) == SN_OK);
    TU_CHECK(runstate_open(other, cfg0, 0) == SN_OK);
    TU_CHECK(sn_write_file_atomic(path2, "x", 1) == SN_OK);
    TU_CHECK_ERR(runstate_check_config(path2, cfg0), "is a file, not a folder");

    /* the folder's file is left as it was */
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", run);
    char *text = sn_read_file(path, NULL);
    TU_CHECK(text && !strcmp(text, cfg0));
    sn_free(text);
}

static void test_hash(void)
{
    uint64_t h;
    long n;
    put("h.txt", "a");
    char path[4200];
    snprintf(path, sizeof path, "%s/h.txt", dir);
    TU_CHECK(runstate_hash_file(path, &h, &n) == SN_OK);
    TU_CHECK(n == 1 && h == 0xaf63dc4c8601ec8cULL); /* FNV-1a 64 of "a" */
    unlink(path);
}

/* begin, outputs, finish: a done unit, with markers and leftovers handled. */
static void test_lifecycle(const struct sweep_unit *u)
{
    char why[256];
    TU_CHECK(check(u, why) == UNIT_PENDING && why[0] == 0);
    TU_CHECK(runstate_unit_begin(dir, "host h pid 1") == SN_OK);
    TU_CHECK(check(u, why) == UNIT_RUNNING && strstr(why, "host h pid 1"));

    put("bank.h5", "bank bytes");
    put("sub/maps.h5", "maps bytes");
    put("maps.h5.tmp.999", "half");
    TU_CHECK(check(u, why) == UNIT_RUNNING);
    TU_CHECK(runstate_unit_finish(dir, u) == SN_OK);
    TU_CHECK(!exists(RUNSTATE_RUNNING));
    TU_CHECK(check(u, why) == UNIT_DONE);

    /* DONE names the unit and every output but no temporary */
    char *done = get(RUNSTATE_DONE);
    TU_CHECK(done && strstr(done, u->id) && strstr(done, "file\tbank.h5\t10\t"));
    TU_CHECK(done && strstr(done, "file\tsub/maps.h5\t10\t") && !strstr(done, "tmp"));
    sn_free(done);

    /* a new attempt drops the marker and the leftovers, keeps outputs */
    TU_CHECK(runstate_unit_begin(dir, "again") == SN_OK);
    TU_CHECK(!exists(RUNSTATE_DONE) && !exists("maps.h5.tmp.999") && exists("bank.h5"));
    TU_CHECK(runstate_unit_finish(dir, u) == SN_OK);
}

/* Anything short of the recorded outputs is partial and redone. */
static void test_corruption(const struct sweep_unit *u, const struct sweep_unit *other)
{
    char why[256];
    put("bank.h5", "bank bytez");
    TU_CHECK(check(u, why) == UNIT_PENDING && strstr(why, "bank.h5 changed"));
    put("bank.h5", "bank");
    TU_CHECK(check(u, why) == UNIT_PENDING && strstr(why, "bank.h5 has 4 bytes"));
    put("bank.h5", "bank bytes");
    TU_CHECK(check(u, why) == UNIT_DONE);

    char path[4200];
    snprintf(path, sizeof path, "%s/sub/maps.h5", dir);
    unlink(path);
    TU_CHECK(check(u, why) == UNIT_PENDING && strstr(why, "sub/maps.h5 is missing"));
    put("sub/maps.h5", "maps bytes");
    TU_CHECK(check(u, why) == UNIT_DONE);

    /* a marker of another unit, or none at all */
    TU_CHECK(runstate_unit_check(dir, other, NULL, NULL, why, sizeof why) ==
             UNIT_PENDING);
    TU_CHECK(strstr(why, "not this unit's") != NULL);
    char *done = get(RUNSTATE_DONE);
    snprintf(path, sizeof path, "%s/%s", dir, RUNSTATE_DONE);
    unlink(path);
    TU_CHECK(check(u, why) == UNIT_PENDING && strstr(why, "no DONE"));
    put(RUNSTATE_DONE, done);
    sn_free(done);
    TU_CHECK(check(u, why) == UNIT_DONE);
}

static int refuse(const struct sweep_unit *u, const char *d, void *ctx)
{
    (void)u;
    (void)d;
    return sn_error("bank.h5 is not HDF5 (%s)", (const char *)ctx);
}

static void test_validate_and_fail(const struct sweep_unit *u)
{
    char why[256];
    TU_CHECK(runstate_unit_check(dir, u, refuse, "ctx", why, sizeof why) == UNIT_PENDING);
    TU_CHECK(strstr(why, "do not validate: bank.h5 is not HDF5 (ctx)") != NULL);

    TU_CHECK(runstate_unit_begin(dir, "w") == SN_OK);
    TU_CHECK(runstate_unit_fail(dir, "decoder diverged") == SN_OK);
    TU_CHECK(check(u, why) == UNIT_FAILED && strstr(why, "decoder diverged"));
    TU_CHECK(!exists(RUNSTATE_RUNNING));
    TU_CHECK(runstate_unit_begin(dir, "w") == SN_OK);
    TU_CHECK(!exists(RUNSTATE_FAILED));
}

static void test_index(void)
{
    struct unit_status *st = sn_calloc((size_t)s.n_units, sizeof *st);
    for (int i = 0; i < s.n_units; i++)
        st[i] = (struct unit_status){UNIT_PENDING, -1, -1};
    st[0] = (struct unit_status){UNIT_DONE, 2, 1.5};
    st[1] = (struct unit_status){UNIT_FAILED, 0, 0.25};
    TU_CHECK(runstate_write_index(run, &s, st) == SN_OK);
    char path[4200];
    snprintf(path, sizeof path, "%s/index.tsv", run);
    char *text = sn_read_file(path, NULL);
    char want[512];
    snprintf(want, sizeof want, "%d units: 1 done, 0 running, %d pending, 1 failed",
             s.n_units, s.n_units - 2);
    TU_CHECK(text && strstr(text, want));
    TU_CHECK(text &&
             strstr(text, "mv/single/c0/snarm/seed0/g0\tmv\tsingle\tc0\tsnarm\t0\t"
                          "g0\tdone\t2\t1.50\n"));
    TU_CHECK(text && strstr(text, "\tfailed\t0\t0.25\n") &&
             strstr(text, "\tpending\t-\t-\n"));
    sn_free(text);

    /* a resumed run keeps the times of units done before it */
    for (int i = 0; i < s.n_units; i++)
        st[i] = (struct unit_status){UNIT_PENDING, -1, -1};
    st[0].state = UNIT_DONE;
    st[1].state = UNIT_DONE;
    st[2] = (struct unit_status){UNIT_DONE, 1, 7.0};
    runstate_keep_seconds(run, &s, st);
    TU_CHECK(st[0].seconds == 1.5 && st[0].group == -1);
    TU_CHECK(st[1].seconds < 0); /* it had failed then */
    TU_CHECK(st[2].seconds == 7.0);

    snprintf(path, sizeof path, "%s/grid.tsv", run);
    text = sn_read_file(path, NULL);
    TU_CHECK(text && !strcmp(text, "grid\tswitches\ng0\t(base)\n"));
    sn_free(text);
    sn_free(st);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path);
}

int main(void)
{
    fake_dataset(&ds, "mv", 2, 4, 2);
    config_defaults(&cfg);
    SN_ASSERT(config_set(&cfg, "data.roots", "[/fake/mv]") == SN_OK);
    SN_ASSERT(config_set(&cfg, "sweep.settings", "[single, multi]") == SN_OK);
    SN_ASSERT(sweep_expand(&s, &cfg, &ds, 1) == SN_OK);
    const char *tmp = tu_tmpdir("runstate");
    snprintf(run, sizeof run, "%s/run", tmp);
    SN_ASSERT(runstate_unit_dir(run, &s.units[0], dir, sizeof dir) == SN_OK);
    TU_CHECK(strstr(dir, "/run/units/mv/single/c0/snarm/seed0/g0") != NULL);

    test_open();
    TU_CHECK(sn_mkdirs(dir) == SN_OK);
    test_hash();
    rmdir(dir);
    test_lifecycle(&s.units[0]);
    test_corruption(&s.units[0], &s.units[1]);
    test_validate_and_fail(&s.units[0]);
    test_index();

    sweep_free(&s);
    dataset_free(&ds);
    nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    return tu_finish("test_dist_runstate");
}
