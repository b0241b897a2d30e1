/*
 * The HDF5 feature store: round trip, self-describing attributes, refusal of
 * a mismatch naming the attribute, and a writer killed half way (fork, then
 * SIGKILL of the child while it writes) that leaves nothing a reader or
 * store_matches takes for a complete store.
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "store.h"
#include "testutil.h"

#define CELLS 49
#define DIM 8

static void meta_fill(struct store_meta *m)
{
    store_meta_init(m);
    snprintf(m->dataset, sizeof m->dataset, "mvtec");
    snprintf(m->class_name, sizeof m->class_name, "bottle");
    snprintf(m->split, sizeof m->split, "train");
    snprintf(m->backbone, sizeof m->backbone, "dinov2_vitb14_reg");
    snprintf(m->weights_hash, sizeof m->weights_hash, "0123456789abcdef");
    m->input_size = 392;
    m->grid = 7;
    m->d = DIM;
    snprintf(m->layer_groups, sizeof m->layer_groups, "1,2,3,4|5,6,7,8");
    m->config_yaml = "features:\n  dim: 8\n";
}

static void image_feat(long i, float *f)
{
    for (int c = 0; c < CELLS * DIM; c++)
        f[c] = (float)i + 0.001f * (float)c;
}

static int write_store(const char *path, const struct store_meta *m, long n)
{
    struct store_writer *w;
    float f[CELLS * DIM];
    char name[64];
    if (store_writer_open(&w, path, m, CELLS) != SN_OK) return SN_EUSER;
    for (long i = 0; i < n; i++) {
        image_feat(i, f);
        snprintf(name, sizeof name, "img/%03ld.png", i);
        store_writer_put(w, f, name, (int)(i % 2));
    }
    return store_writer_finish(w);
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != 0;
    if (d) closedir(d);
    return n;
}

/* A child writes images one by one and reports each through a pipe; the
 * parent kills it after the third. */
static void check_killed_writer(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/mvtec/bottle_train.h5", dir);
    struct store_meta m;
    meta_fill(&m);
    int fd[2];
    TU_CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct store_writer *w;
        float f[CELLS * DIM];
        close(fd[0]);
        if (store_writer_open(&w, path, &m, CELLS) != SN_OK) _exit(1);
        for (long i = 0;; i++) {
            image_feat(i, f);
            store_writer_put(w, f, "img.png", 0);
            if (write(fd[1], "x", 1) != 1) _exit(1);
            usleep(20000);
        }
    }
    close(fd[1]);
    char c;
    for (int got = 0; got < 3;)
        got += read(fd[0], &c, 1) == 1;
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    close(fd[0]);
    TU_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* nothing under the final name; the temporary file is not a store */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/mvtec", dir);
    TU_CHECK(!sn_file_exists(path));
    TU_CHECK(count_tmp_files(sub) == 1);
    TU_CHECK(store_matches(path, &m) == 0);
    struct store_reader *r;
    TU_CHECK_ERR(store_reader_open(&r, path, &m), "does not exist");

    /* even renamed by hand, the partial file lacks its complete flag */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
    TU_CHECK(rename(tmp, path) == 0);
    TU_CHECK(store_matches(path, &m) == 0);
    TU_CHECK_ERR(store_reader_open(&r, path, &m), "incomplete");
    unlink(path);
}

static void check_round_trip(const char *dir)
{
    char path[4200];
    TU_CHECK(store_path(path, sizeof path, dir, "mvtec", "bottle", "test") == SN_OK);
    struct store_meta m;
    meta_fill(&m);
    snprintf(m.split, sizeof m.split, "test");
    TU_CHECK(store_matches(path, &m) == 0);
    TU_CHECK(write_store(path, &m, 5) == SN_OK);
    TU_CHECK(store_matches(path, &m) == 1);

    struct store_reader *r;
    TU_CHECK(store_reader_open(&r, path, &m) == SN_OK);
    if (!r) return;
    TU_CHECK(store_reader_count(r) == 5 && store_reader_cells(r) == CELLS);
    float f[CELLS * DIM], want[CELLS * DIM], all[3 * CELLS * DIM];
    TU_CHECK(store_reader_get(r, 3, f) == SN_OK);
    image_feat(3, want);
    TU_CLOSE("image 3", f, want, CELLS * DIM, 0, 0);
    TU_CHECK(store_reader_get_range(r, 2, 3, all) == SN_OK);
    TU_CLOSE("images 2..4", all + CELLS * DIM, want, CELLS * DIM, 0, 0);
    TU_CHECK(!strcmp(store_reader_path(r, 4), "img/004.png"));
    TU_CHECK(store_reader_label(r, 3) == 1 && store_reader_label(r, 2) == 0);
    const struct store_meta *s = store_reader_meta(r);
    TU_CHECK(!strcmp(s->backbone, m.backbone) && s->grid == 7 && s->d == DIM);
    TU_CHECK(!strcmp(s->version, sn_version()));
    TU_CHECK(s->config_yaml && strstr(s->config_yaml, "dim: 8"));
    TU_CHECK_ERR(store_reader_get(r, 5, f), "images 5..5");
    store_reader_close(r);
    TU_CHECK(count_tmp_files(dir) == 0);
}

/* Each compared attribute, changed, is named in the refusal. */
static void check_mismatch(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/mism.h5", dir);
    struct store_meta m, e;
    meta_fill(&m);
    TU_CHECK(write_store(path, &m, 2) == SN_OK);
    struct store_reader *r;

    e = m, e.grid = 49;
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "grid 7 but 49 is expected");
    e = m, snprintf(e.backbone, sizeof e.backbone, "resnet18");
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "backbone 'dinov2_vitb14_reg' but "
                                                  "'resnet18'");
    e = m, snprintf(e.weights_hash, sizeof e.weights_hash, "ffff");
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "weights_hash");
    e = m, e.d = 16;
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "with d 8 but 16");
    e = m, e.input_size = 224;
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "input_size");
    e = m, snprintf(e.layer_groups, sizeof e.layer_groups, "1,2|3,4");
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "layer_groups");
    e = m, snprintf(e.class_name, sizeof e.class_name, "cable");
    TU_CHECK_ERR(store_reader_open(&r, path, &e), "class 'bottle'");
    TU_CHECK(store_matches(path, &e) == 0);

    /* the configuration text and the version are recorded, not compared */
    e = m, e.config_yaml = "other: 1\n";
    TU_CHECK(store_matches(path, &e) == 1);

    /* not an HDF5 file */
    TU_CHECK(sn_write_file_atomic(path, "hello", 5) == SN_OK);
    TU_CHECK_ERR(store_reader_open(&r, path, &m), "not an HDF5 file");
}

static void check_abort(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/aborted.h5", dir);
    struct store_meta m;
    meta_fill(&m);
    struct store_writer *w;
    float f[CELLS * DIM] = {0};
    TU_CHECK(store_writer_open(&w, path, &m, CELLS) == SN_OK);
    TU_CHECK(store_writer_put(w, f, "a.png", 0) == SN_OK);
    f[3 * DIM + 1] = 0.0f / 0.0f;
    TU_CHECK_ERR(store_writer_put(w, f, "b.png", 0), "features of b.png row 3");
    store_writer_abort(w);
    TU_CHECK(!sn_file_exists(path) && count_tmp_files(dir) == 0);
}

/* Remove the test's temporary tree (only names made above live there). */
static int system_rm(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

int main(void)
{
    const char *dir = tu_tmpdir("store");
    check_killed_writer(dir);
    check_round_trip(dir);
    check_mismatch(dir);
    check_abort(dir);
    char hash[17];
    char path[4200];
    snprintf(path, sizeof path, "%s/h.bin", dir);
    TU_CHECK(sn_write_file_atomic(path, "abc", 3) == SN_OK);
    TU_CHECK(store_hash_file(path, hash) == SN_OK && !strcmp(hash, "e71fa2190541574b"));
    TU_CHECK(system_rm(dir) == 0);
    return tu_finish("test_store");
}
