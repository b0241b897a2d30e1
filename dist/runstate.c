/*
 * runstate.c - run folder, unit markers and the index.
 */
#define _GNU_SOURCE
#include "runstate.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define DONE_MAGIC "snarm-unit-done 1"

static const char *state_names[] = {"pending", "running", "done", "failed"};

const char *unit_state_name(enum unit_state s)
{
    SN_ASSERT((unsigned)s < SN_ARRAY_LEN(state_names));
    return state_names[s];
}

/* ---------------------------------------------------------------------------
 * The run folder */

/* Keys that say how a run executes, not what it computes: a resumed run may
 * change them. */
static const char *const resume_free_keys[] = {"run.threads", "run.log"};

/* Where a walk over a printed configuration is: the section and the
 * second-level key above the current line. */
struct config_pos {
    char section[128], parent[256];
};

/* The dotted key of the line at p ("section", "section.key" or
 * "section.key.sub"; empty for comments and blank lines), and its end. */
static void config_line(const char *p, struct config_pos *pos, char *key, size_t cap,
                        const char **end)
{
    const char *e = strchr(p, '\n');
    if (!e) e = p + strlen(p);
    *end = e;
    key[0] = '\0';
    if (p == e || *p == '#') return;
    const char *colon = memchr(p, ':', (size_t)(e - p));
    if (!colon) return;
    const char *k = p;
    while (k < colon && *k == ' ')
        k++;
    int indent = (int)(k - p), len = (int)(colon - k);
    if (indent == 0) {
        snprintf(pos->section, sizeof pos->section, "%.*s", len, k);
        snprintf(key, cap, "%s", pos->section);
    } else if (indent <= 2) {
        snprintf(pos->parent, sizeof pos->parent, "%s.%.*s", pos->section, len, k);
        snprintf(key, cap, "%s", pos->parent);
    } else {
        snprintf(key, cap, "%s.%.*s", pos->parent, len, k);
    }
}

static int resume_free(const char *key)
{
    for (size_t i = 0; i < SN_ARRAY_LEN(resume_free_keys); i++)
        if (!strcmp(key, resume_free_keys[i])) return 1;
    return 0;
}

/* The next line of a printed configuration that matters for resuming:
 * comments (the header names the file and the version) and the keys a
 * resumed run may change are skipped. NULL at the end. */
static const char *next_relevant(const char *p, struct config_pos *pos, char *key,
                                 size_t cap, const char **end)
{
    while (*p) {
        const char *e;
        config_line(p, pos, key, cap, &e);
        if (key[0] && !resume_free(key)) {
            *end = e;
            return p;
        }
        p = *e ? e + 1 : e;
    }
    return NULL;
}

/* Whether the configuration stored in a run folder (old) and the current one
 * (cur) describe the same experiment; if not, why names the first key that
 * differs, with both values. */
static int config_same_experiment(const char *old, const char *cur, char *why, size_t cap)
{
    struct config_pos pa = {"", ""}, pb = {"", ""};
    char key_a[384], key_b[384];
    const char *a = old, *b = cur, *ea = NULL, *eb = NULL;
    for (;;) {
        a = next_relevant(a, &pa, key_a, sizeof key_a, &ea);
        b = next_relevant(b, &pb, key_b, sizeof key_b, &eb);
        if (!a && !b) return 1;
        if (!a || !b || ea - a != eb - b || memcmp(a, b, (size_t)(ea - a))) break;
        a = *ea ? ea + 1 : ea;
        b = *eb ? eb + 1 : eb;
    }
    if (a && b && !strcmp(key_a, key_b)) {
        const char *va = strchr(a, ':') + 1, *vb = strchr(b, ':') + 1;
        while (*va == ' ')
            va++;
        while (*vb == ' ')
            vb++;
        snprintf(why, cap, "%s was '%.*s' and is now '%.*s'", key_a, (int)(ea - va), va,
                 (int)(eb - vb), vb);
    } else if (a && b) {
        snprintf(why, cap, "the current configuration has '%s' where the stored one has "
                 "'%s'", key_b, key_a);
    } else {
        snprintf(why, cap, "'%s' is only in the %s configuration", a ? key_a : key_b,
                 a ? "stored" : "current");
    }
    return 0;
}

static int is_temporary(const char *name);

/* The first entry of dir (leaving out temporaries, an empty units/ and, at
 * the top, cache/: feature stores are self-describing and checked when
 * read, so a cache may be seeded by hand) in name; 0 when there is none or
 * dir does not exist. */
static int first_entry(const char *dir, int units_too, char *name, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || is_temporary(e->d_name))
            continue;
        if (units_too && !strcmp(e->d_name, "cache")) continue;
        if (units_too && !strcmp(e->d_name, "units")) {
            char sub[4096];
            if (sn_path_join(sub, sizeof sub, dir, "units") != SN_OK) continue;
            found = first_entry(sub, 0, name, cap);
            if (found) {
                char inner[512];
                snprintf(inner, sizeof inner, "%s", name);
                snprintf(name, cap, "units/%s", inner);
            }
            continue;
        }
        snprintf(name, cap, "%s", e->d_name);
        found = 1;
    }
    closedir(d);
    return found;
}

/* A folder without config.yaml is a run folder only while it is empty: one
 * that holds units whose configuration was removed, or anything else, is
 * not taken over. */
static int check_unclaimed(const char *run_dir)
{
    char name[600];
    if (sn_file_exists(run_dir) && !sn_dir_exists(run_dir))
        return sn_error("run.out_dir %s is a file, not a folder", run_dir);
    if (first_entry(run_dir, 1, name, sizeof name))
        return sn_error("%s holds %s but no config.yaml, so it is not a run folder of "
                        "snarm or its configuration was removed; set another "
                        "run.out_dir (or put the run's config.yaml back)",
                        run_dir, name);
    return SN_OK;
}

int runstate_open(const char *run_dir, const char *config_text, int resume)
{
    char path[4096], units[4096];
    if (sn_path_join(path, sizeof path, run_dir, "config.yaml") != SN_OK ||
        sn_path_join(units, sizeof units, run_dir, "units") != SN_OK)
        return SN_EUSER;
    if (!sn_file_exists(path) && check_unclaimed(run_dir) != SN_OK) return SN_EUSER;
    if (sn_mkdirs(units) != SN_OK) return SN_EUSER;

    /* an existing run is continued only on request and unchanged */
    if (sn_file_exists(path)) {
        if (!resume)
            return sn_error("%s already holds a run (config.yaml); pass --resume to "
                            "continue it, or set another run.out_dir",
                            run_dir);
        return runstate_check_config(run_dir, config_text);
    }
    return sn_write_file_atomic(path, config_text, strlen(config_text));
}

int runstate_check_config(const char *run_dir, const char *config_text)
{
    char path[4096], why[2048];
    if (sn_path_join(path, sizeof path, run_dir, "config.yaml") != SN_OK) return SN_EUSER;
    if (!sn_file_exists(path)) return check_unclaimed(run_dir);
    char *old = sn_read_file(path, NULL);
    if (!old) return SN_EUSER;
    int same = config_same_experiment(old, config_text, why, sizeof why);
    sn_free(old);
    if (!same)
        return sn_error("%s holds another experiment: %s. A run folder holds one "
                        "experiment (only run.threads and run.log may change); set "
                        "another run.out_dir",
                        path, why);
    return SN_OK;
}

int runstate_unit_dir(const char *run_dir, const struct sweep_unit *u, char *out,
                      size_t cap)
{
    int n = snprintf(out, cap, "%s/units/%s", run_dir, u->id);
    if (n < 0 || (size_t)n >= cap)
        return sn_error("path too long: %s/units/%s", run_dir, u->id);
    return SN_OK;
}

/* ---------------------------------------------------------------------------
 * Listing a unit folder */

struct names {
    int n, cap;
    char **v;
};

static void names_push(struct names *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = sn_realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = sn_strdup(s);
}

static void names_free(struct names *l)
{
    for (int i = 0; i < l->n; i++)
        sn_free(l->v[i]);
    sn_free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_marker(const char *rel)
{
    return !strcmp(rel, RUNSTATE_DONE) || !strcmp(rel, RUNSTATE_RUNNING) ||
           !strcmp(rel, RUNSTATE_FAILED);
}

static int is_temporary(const char *name)
{
    return strstr(name, ".tmp.") != NULL;
}

/* Regular files under dir/rel, recursively, as paths relative to dir.
 * Markers are left out; temporaries go to tmps when given. */
static int walk(const char *dir, const char *rel, struct names *files, struct names *tmps)
{
    char here[4096];
    snprintf(here, sizeof here, "%s%s%s", dir, *rel ? "/" : "", rel);
    DIR *d = opendir(here);
    if (!d) return sn_error("cannot list %s: %s", here, strerror(errno));
    int st = SN_OK;
    for (struct dirent *e; st == SN_OK && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4096], full[4200];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", dir, sub);
        struct stat sb;
        if (lstat(full, &sb) != 0) continue; /* vanished meanwhile */
        if (S_ISDIR(sb.st_mode)) {
            st = walk(dir, sub, files, tmps);
        } else if (is_temporary(e->d_name)) {
            if (tmps) names_push(tmps, sub);
        } else if (S_ISREG(sb.st_mode) && !is_marker(sub)) {
            names_push(files, sub);
        }
    }
    closedir(d);
    return st;
}

int runstate_hash_file(const char *path, uint64_t *hash, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error("cannot open %s: %s", path, strerror(errno));
    static _Thread_local unsigned char buf[1 << 16];
    uint64_t h = 0xcbf29ce484222325ULL;
    long total = 0;
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < r; i++)
            h = (h ^ buf[i]) * 0x100000001b3ULL;
        total += (long)r;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return sn_error("cannot read %s", path);
    *hash = h;
    *size = total;
    return SN_OK;
}

/* ---------------------------------------------------------------------------
 * Markers */

static void unlink_in(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT)
        sn_fatal("cannot remove %s: %s", path, strerror(errno));
}

static int write_in(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return sn_write_file_atomic(path, text, strlen(text));
}

int runstate_unit_begin(const char *dir, const char *who)
{
    if (sn_mkdirs(dir) != SN_OK) return SN_EUSER;
    /* DONE goes first: from here on the folder is not finished */
    unlink_in(dir, RUNSTATE_DONE);
    unlink_in(dir, RUNSTATE_FAILED);

    /* leftovers of writers killed before their rename */
    struct names files = {0}, tmps = {0};
    int st = walk(dir, "", &files, &tmps);
    for (int i = 0; st == SN_OK && i < tmps.n; i++)
        unlink_in(dir, tmps.v[i]);
    names_free(&files);
    names_free(&tmps);
    if (st != SN_OK) return st;

    char text[1024];
    snprintf(text, sizeof text, "%s\n", who);
    return write_in(dir, RUNSTATE_RUNNING, text);
}

/* DONE: the magic line, the id, then one line per file (sorted). */
static int done_text(const char *dir, const struct sweep_unit *u, char **out)
{
    struct names files = {0};
    int st = walk(dir, "", &files, NULL);
    if (st != SN_OK) return st;
    qsort(files.v, (size_t)files.n, sizeof *files.v, cmp_str);

    size_t cap = 256 + strlen(u->id), n = 0;
    for (int i = 0; i < files.n; i++)
        cap += strlen(files.v[i]) + 48;
    char *t = sn_malloc(cap);
    n += (size_t)snprintf(t, cap, "%s\nid\t%s\nfiles\t%d\n", DONE_MAGIC, u->id, files.n);
    for (int i = 0; st == SN_OK && i < files.n; i++) {
        char path[4200];
        uint64_t h;
        long size;
        snprintf(path, sizeof path, "%s/%s", dir, files.v[i]);
        st = runstate_hash_file(path, &h, &size);
        if (st == SN_OK)
            n += (size_t)snprintf(t + n, cap - n, "file\t%s\t%ld\t%016" PRIx64 "\n",
                                  files.v[i], size, h);
    }
    names_free(&files);
    if (st != SN_OK)
        sn_free(t);
    else
        *out = t;
    return st;
}

int runstate_unit_finish(const char *dir, const struct sweep_unit *u)
{
    char *text;
    if (done_text(dir, u, &text) != SN_OK) return SN_EUSER;
    int st = write_in(dir, RUNSTATE_DONE, text);
    sn_free(text);
    if (st == SN_OK) unlink_in(dir, RUNSTATE_RUNNING);
    return st;
}

int runstate_unit_fail(const char *dir, const char *message)
{
    char text[4200];
    snprintf(text, sizeof text, "%s\n", message);
    int st = write_in(dir, RUNSTATE_FAILED, text);
    if (st == SN_OK) unlink_in(dir, RUNSTATE_RUNNING);
    return st;
}

/* ---------------------------------------------------------------------------
 * Checking a unit folder */

/* One "file" line of DONE against the folder. */
static int done_check_file(const char *dir, char *line, char *why, size_t cap)
{
    char *save, *tag = strtok_r(line, "\t", &save), *name = strtok_r(NULL, "\t", &save);
    char *size_s = strtok_r(NULL, "\t", &save), *hash_s = strtok_r(NULL, "\t", &save);
    if (!tag || strcmp(tag, "file") || !name || !size_s || !hash_s) {
        snprintf(why, cap, "DONE marker is malformed");
        return SN_EUSER;
    }
    char path[4200];
    uint64_t h;
    long size;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!sn_file_exists(path) || runstate_hash_file(path, &h, &size) != SN_OK) {
        snprintf(why, cap, "%s is missing or unreadable", name);
        return SN_EUSER;
    }
    if (size != atol(size_s)) {
        snprintf(why, cap, "%s has %ld bytes, DONE says %s", name, size, size_s);
        return SN_EUSER;
    }
    if (h != strtoull(hash_s, NULL, 16)) {
        snprintf(why, cap, "%s changed since it was finished (hash)", name);
        return SN_EUSER;
    }
    return SN_OK;
}

static int done_check(const char *dir, const struct sweep_unit *u, char *why, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RUNSTATE_DONE);
    if (!sn_file_exists(path)) {
        snprintf(why, cap, "no DONE marker");
        return SN_EUSER;
    }
    char *text = sn_read_file(path, NULL);
    if (!text) {
        snprintf(why, cap, "DONE marker unreadable");
        return SN_EUSER;
    }

    /* header, then every listed file must match */
    int st = SN_OK, n_files = -1, seen = 0;
    char *save, *line = strtok_r(text, "\n", &save);
    char id_line[SWEEP_ID_MAX + 8];
    snprintf(id_line, sizeof id_line, "id\t%s", u->id);
    if (!line || strcmp(line, DONE_MAGIC)) st = SN_EUSER;
    line = st == SN_OK ? strtok_r(NULL, "\n", &save) : NULL;
    if (!line || strcmp(line, id_line)) st = SN_EUSER;
    line = st == SN_OK ? strtok_r(NULL, "\n", &save) : NULL;
    if (!line || sscanf(line, "files\t%d", &n_files) != 1) st = SN_EUSER;
    if (st != SN_OK) snprintf(why, cap, "DONE marker is not this unit's or malformed");
    while (st == SN_OK && (line = strtok_r(NULL, "\n", &save))) {
        st = done_check_file(dir, line, why, cap);
        seen++;
    }
    if (st == SN_OK && seen != n_files) {
        snprintf(why, cap, "DONE marker lists %d of %d files", seen, n_files);
        st = SN_EUSER;
    }
    sn_free(text);
    return st;
}

static void first_line(const char *dir, const char *name, char *out, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = sn_read_file(path, NULL);
    snprintf(out, cap, "%s: %s", name, text ? text : "(unreadable)");
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    sn_free(text);
}

enum unit_state runstate_unit_check(const char *dir, const struct sweep_unit *u,
                                    unit_validate_fn validate, void *ctx, char *why,
                                    size_t cap)
{
    char scratch[512];
    if (!why) {
        why = scratch;
        cap = sizeof scratch;
    }
    why[0] = 0;
    if (!sn_dir_exists(dir)) return UNIT_PENDING;

    /* done: the marker matches every file and the outputs read back */
    if (done_check(dir, u, why, cap) == SN_OK) {
        if (!validate || validate(u, dir, ctx) == SN_OK) return UNIT_DONE;
        snprintf(why, cap, "outputs do not validate: %s", sn_last_error());
        return UNIT_PENDING;
    }

    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RUNSTATE_FAILED);
    if (sn_file_exists(path)) {
        first_line(dir, RUNSTATE_FAILED, why, cap);
        return UNIT_FAILED;
    }
    snprintf(path, sizeof path, "%s/%s", dir, RUNSTATE_RUNNING);
    if (sn_file_exists(path)) {
        first_line(dir, RUNSTATE_RUNNING, why, cap);
        return UNIT_RUNNING;
    }
    return UNIT_PENDING;
}

/* ---------------------------------------------------------------------------
 * Index */

static char *index_text(const struct sweep *s, const struct unit_status *st)
{
    int count[4] = {0};
    for (int i = 0; i < s->n_units; i++)
        count[st[i].state]++;

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SN_CHECK_IO(f, "index");
    fprintf(f,
            "# snarm run index: %d units: %d done, %d running, %d pending, "
            "%d failed\n",
            s->n_units, count[UNIT_DONE], count[UNIT_RUNNING], count[UNIT_PENDING],
            count[UNIT_FAILED]);
    fprintf(f,
            "id\tdataset\tsetting\tclass\tmethod\tseed\tgrid\tstate\tgroup\tseconds\n");
    for (int i = 0; i < s->n_units; i++) {
        const struct sweep_unit *u = &s->units[i];
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%ld\tg%d\t%s\t", u->id, u->ds->name,
                sweep_setting_name(u->setting),
                u->cls >= 0 ? u->ds->classes[u->cls].name : "all", u->method, u->seed,
                u->grid, unit_state_name(st[i].state));
        if (st[i].group >= 0)
            fprintf(f, "%d\t", st[i].group);
        else
            fputs("-\t", f);
        if (st[i].seconds >= 0)
            fprintf(f, "%.2f\n", st[i].seconds);
        else
            fputs("-\n", f);
    }
    SN_CHECK_IO(fclose(f) == 0, "index");
    char *out = sn_strdup(buf);
    free(buf); /* from open_memstream */
    return out;
}

static char *grid_text(const struct sweep *s)
{
    size_t cap = 32, n = 0;
    for (int g = 0; g < s->n_grid; g++)
        cap += strlen(s->grid_desc[g]) + 16;
    char *t = sn_malloc(cap);
    n += (size_t)snprintf(t, cap, "grid\tswitches\n");
    for (int g = 0; g < s->n_grid; g++)
        n += (size_t)snprintf(t + n, cap - n, "g%d\t%s\n", g,
                              s->grid_desc[g][0] ? s->grid_desc[g] : "(base)");
    return t;
}

void runstate_keep_seconds(const char *run_dir, const struct sweep *s,
                           struct unit_status *st)
{
    char path[4096];
    if (sn_path_join(path, sizeof path, run_dir, "index.tsv") != SN_OK ||
        !sn_file_exists(path))
        return;
    char *text = sn_read_file(path, NULL);
    if (!text) return;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        /* id dataset setting class method seed grid state group seconds */
        char *field[10];
        int n = 0;
        for (char *p = line; n < 10; p++) {
            field[n++] = p;
            if (!(p = strchr(p, '\t'))) break;
            *p = '\0';
        }
        if (n != 10 || line[0] == '#' || strcmp(field[7], "done")) continue;
        char *end;
        double sec = strtod(field[9], &end);
        if (end == field[9] || *end || !(sec >= 0)) continue;
        for (int i = 0; i < s->n_units; i++)
            if (st[i].state == UNIT_DONE && st[i].seconds < 0 &&
                !strcmp(s->units[i].id, line)) {
                st[i].seconds = sec;
                break;
            }
    }
    sn_free(text);
}

int runstate_write_index(const char *run_dir, const struct sweep *s,
                         const struct unit_status *st)
{
    char path[4096];
    char *text = index_text(s, st);
    int rc = sn_path_join(path, sizeof path, run_dir, "index.tsv");
    if (rc == SN_OK) rc = sn_write_file_atomic(path, text, strlen(text));
    sn_free(text);
    if (rc != SN_OK) return rc;

    text = grid_text(s);
    rc = sn_path_join(path, sizeof path, run_dir, "grid.tsv");
    if (rc == SN_OK) rc = sn_write_file_atomic(path, text, strlen(text));
    sn_free(text);
    return rc;
}
