/*
 * sched.c - planning on rank 0, dynamic hand-out of units to groups of
 * ranks, and the bookkeeping around each unit.
 */
#define _GNU_SOURCE
#include "sched.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"
#include "common.h"
#include "log.h"

#define TAG_ASK 7101
#define TAG_UNIT 7102
/* Seconds between index rewrites while units finish (always at the end). */
#define INDEX_EVERY 1.0
/* Dispatcher poll interval: short against unit times, long against a core. */
#define POLL_NS 2000000L

/* A group root's request: how its previous unit ended, then "next please". */
enum { ASK_UNIT, ASK_OK, ASK_MILLIS, ASK_GROUP, ASK_LEN };

int sched_in_shard(const struct sched_opts *o, int i)
{
    return o->n_shards <= 1 || i % o->n_shards == o->shard;
}

/* ---------------------------------------------------------------------------
 * Planning */

void sched_plan(const struct sweep *s, const char *run_dir, const struct sched_opts *o,
                struct unit_status *st, char (*why)[256])
{
    for (int i = 0; i < s->n_units; i++) {
        char dir[4096], reason[256] = "";
        st[i] = (struct unit_status){UNIT_PENDING, -1, -1.0};
        if (runstate_unit_dir(run_dir, &s->units[i], dir, sizeof dir) == SN_OK)
            st[i].state = runstate_unit_check(dir, &s->units[i], o->validate, o->ctx,
                                              reason, sizeof reason);
        else
            snprintf(reason, sizeof reason, "%s", sn_last_error());

        /* in this shard, whatever is not done will be (re)done */
        if (sched_in_shard(o, i) && st[i].state != UNIT_DONE) st[i].state = UNIT_PENDING;
        if (why) snprintf(why[i], sizeof why[i], "%s", reason);
    }
}

void sched_print_plan(const struct sweep *s, const char *run_dir,
                      const struct sched_opts *o, FILE *out)
{
    struct unit_status *st = sn_calloc((size_t)s->n_units, sizeof *st);
    char(*why)[256] = sn_calloc((size_t)s->n_units, sizeof *why);
    sched_plan(s, run_dir, o, st, why);

    int count[4] = {0};
    for (int i = 0; i < s->n_units; i++) {
        int mine = sched_in_shard(o, i);
        if (mine) count[st[i].state]++;
        fprintf(out, "%-8s %s%s%s%s\n", unit_state_name(st[i].state), s->units[i].id,
                mine ? "" : "  (other shard)", why[i][0] ? "  # " : "", why[i]);
    }
    for (int g = 0; g < s->n_grid && s->grid_desc[g][0]; g++)
        fprintf(out, "g%d: %s\n", g, s->grid_desc[g]);
    fprintf(out, "%d units, %d in this shard: %d done, %d to run\n", s->n_units,
            count[UNIT_DONE] + count[UNIT_PENDING], count[UNIT_DONE],
            count[UNIT_PENDING]);
    sn_free(st);
    sn_free(why);
}

/* A rough relative cost: images touched, plus the training steps' samples
 * for methods that train. Only the order of hand-out depends on it. */
static double unit_cost(const struct sweep *s, const struct sweep_unit *u,
                        const long *step_samples)
{
    struct unit_images im;
    if (sweep_unit_images(u, u->ds, &im) != SN_OK) return 0;
    double cost = im.n_bank + im.n_train + im.n_test;
    unit_images_free(&im);
    if (sweep_method_trains(u->method)) cost += (double)step_samples[u->grid];
    (void)s;
    return cost;
}

struct queued {
    int unit;
    double cost;
};

static int cmp_queued(const void *a, const void *b)
{
    const struct queued *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return (x->unit > y->unit) - (x->unit < y->unit);
}

/* The shard's pending units, longest first (ties by index). */
static int *queue_build(const struct sweep *s, const struct unit_status *st,
                        const struct sched_opts *o, int *n_out)
{
    long *step_samples = sn_calloc((size_t)s->n_grid, sizeof *step_samples);
    struct sn_config *c = sn_malloc(sizeof *c);
    for (int g = 0; g < s->n_grid; g++) {
        sweep_grid_config(s, g, c);
        step_samples[g] = c->train.steps * c->train.batch;
    }
    sn_free(c);

    struct queued *q = sn_calloc((size_t)s->n_units + 1, sizeof *q);
    int n = 0;
    for (int i = 0; i < s->n_units; i++)
        if (sched_in_shard(o, i) && st[i].state == UNIT_PENDING)
            q[n++] = (struct queued){i, unit_cost(s, &s->units[i], step_samples)};
    qsort(q, (size_t)n, sizeof *q, cmp_queued);
    int *order = sn_calloc((size_t)n + 1, sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = q[i].unit;
    sn_free(q);
    sn_free(step_samples);
    *n_out = n;
    return order;
}

/* ---------------------------------------------------------------------------
 * The dispatcher (rank 0) */

struct dispatch {
    const struct sweep *s;
    const char *run_dir;
    const struct sched_opts *o;
    struct unit_status *st;
    int *queue, n_queue, next;
    int running, finished, failed, skipped, n_shard;
    int n_remote, stopped; /* remote group roots, and how many were told to stop */
    MPI_Comm comm;
    pthread_mutex_t mu;
    double t0, last_progress, last_index;
};

static void dispatch_progress(struct dispatch *d, int force)
{
    double now = sn_now();
    if (!force && now - d->last_progress < d->o->progress_every) return;
    d->last_progress = now;
    int done = d->skipped + d->finished;
    int left = d->n_shard - done - d->failed - d->running;
    log_info("sweep: %d/%d done (%d before this run), %d running, %d left, %d failed, "
             "%.1f s",
             done, d->n_shard, d->skipped, d->running, left, d->failed, now - d->t0);
}

static void dispatch_index(struct dispatch *d, int force)
{
    double now = sn_now();
    if (!force && now - d->last_index < INDEX_EVERY) return;
    d->last_index = now;
    if (runstate_write_index(d->run_dir, d->s, d->st) != SN_OK)
        log_warn("cannot write the run index: %s", sn_last_error());
}

/* Record how a unit ended and hand out the next one (-1: none left).
 * Called with the mutex held. */
static long dispatch_step(struct dispatch *d, const long *ask)
{
    long prev = ask[ASK_UNIT];
    if (prev >= 0) {
        SN_ASSERT(prev < d->s->n_units && d->st[prev].state == UNIT_RUNNING);
        d->st[prev].state = ask[ASK_OK] ? UNIT_DONE : UNIT_FAILED;
        d->st[prev].seconds = (double)ask[ASK_MILLIS] / 1000.0;
        d->running--;
        if (ask[ASK_OK])
            d->finished++;
        else
            d->failed++;
    }
    long next = -1;
    if (d->next < d->n_queue) {
        next = d->queue[d->next++];
        d->st[next] = (struct unit_status){UNIT_RUNNING, (int)ask[ASK_GROUP], -1.0};
        d->running++;
    }
    if (prev >= 0) dispatch_progress(d, 0);
    dispatch_index(d, 0);
    return next;
}

static long dispatch_local(struct dispatch *d, const long *ask)
{
    pthread_mutex_lock(&d->mu);
    long next = dispatch_step(d, ask);
    pthread_mutex_unlock(&d->mu);
    return next;
}

/* Answer the other groups' roots until each has been told to stop. */
static void *dispatch_thread(void *arg)
{
    struct dispatch *d = arg;
    const struct timespec pause = {0, POLL_NS};
    while (d->stopped < d->n_remote) {
        int flag = 0;
        MPI_Status ms;
        SN_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, d->comm, &flag, &ms));
        if (!flag) {
            nanosleep(&pause, NULL);
            continue;
        }
        long ask[ASK_LEN];
        SN_MPI_CHECK(MPI_Recv(ask, ASK_LEN, MPI_LONG, ms.MPI_SOURCE, TAG_ASK, d->comm,
                              MPI_STATUS_IGNORE));
        long next = dispatch_local(d, ask);
        if (next < 0) d->stopped++;
        SN_MPI_CHECK(MPI_Send(&next, 1, MPI_LONG, ms.MPI_SOURCE, TAG_UNIT, d->comm));
    }
    return NULL;
}

/* ---------------------------------------------------------------------------
 * One unit on one group */

struct worker {
    const struct sweep *s;
    const char *run_dir;
    const struct sched_opts *o;
    MPI_Comm world, group;
    int world_rank, group_rank, group_id;
    MPI_Comm chan;      /* the scheduler's own messages (a duplicate of world) */
    struct dispatch *d; /* the dispatcher, on rank 0 */
};

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return sn_write_file_atomic(path, text, strlen(text));
}

/* Group root, before the unit: markers, the image selection and the unit's
 * configuration, so that the folder says what the unit is even if it dies. */
static int unit_begin(const struct worker *w, const struct sweep_unit *u, const char *dir)
{
    char who[512], host[256] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(who, sizeof who, "host %s pid %ld rank %d group %d", host, (long)getpid(),
             w->world_rank, w->group_id);
    if (runstate_unit_begin(dir, who) != SN_OK) return SN_EUSER;

    struct unit_images im;
    if (sweep_unit_images(u, u->ds, &im) != SN_OK) return SN_EUSER;
    char *tsv = unit_images_to_tsv(&im, u->ds);
    int st = write_text(dir, "images.tsv", tsv);
    sn_free(tsv);
    unit_images_free(&im);
    if (st != SN_OK) return st;

    struct sn_config *c = sn_malloc(sizeof *c);
    sweep_unit_config(w->s, u, c);
    char *yaml = config_to_string(c);
    st = write_text(dir, "config.yaml", yaml);
    sn_free(yaml);
    sn_free(c);
    return st;
}

/* Group root, after the unit: DONE when everyone succeeded and the outputs
 * validate, FAILED otherwise. Returns 1 for done. */
static int unit_end(const struct worker *w, const struct sweep_unit *u, const char *dir,
                    int mine_ok, int all_ok)
{
    char msg[2048];
    if (all_ok && w->o->validate && w->o->validate(u, dir, w->o->ctx) != SN_OK) {
        snprintf(msg, sizeof msg, "outputs do not validate: %s", sn_last_error());
        all_ok = 0;
        mine_ok = 0;
    } else if (!mine_ok) {
        snprintf(msg, sizeof msg, "%s", sn_last_error());
    } else {
        snprintf(msg, sizeof msg, "another rank of group %d failed; see its log",
                 w->group_id);
    }
    if (all_ok && runstate_unit_finish(dir, u) == SN_OK) return 1;
    if (all_ok) snprintf(msg, sizeof msg, "cannot finish: %s", sn_last_error());
    log_error("unit %s failed: %s", u->id, msg);
    if (runstate_unit_fail(dir, msg) != SN_OK)
        log_error("cannot record the failure of %s: %s", u->id, sn_last_error());
    return 0;
}

/* Every rank of the group: run the unit, agree on the outcome. */
static int unit_execute(const struct worker *w, int index, int begun, double *seconds)
{
    const struct sweep_unit *u = &w->s->units[index];
    char dir[4096];
    SN_ASSERT(runstate_unit_dir(w->run_dir, u, dir, sizeof dir) == SN_OK);
    double t0 = sn_now();
    if (w->group_rank == 0) log_info("unit %s: start (group %d)", u->id, w->group_id);

    sn_error_clear();
    int ok = begun && w->o->run(u, dir, w->group, w->o->ctx) == SN_OK;
    if (begun && !ok && w->group_rank != 0)
        log_error("unit %s: %s", u->id, sn_last_error());
    int all_ok = 0;
    SN_MPI_CHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, w->group));

    int done = w->group_rank == 0 ? unit_end(w, u, dir, ok, all_ok) : all_ok;
    *seconds = sn_now() - t0;
    if (done && w->group_rank == 0) log_info("unit %s: done in %.2f s", u->id, *seconds);
    return done;
}

/* The group root asks for work: directly on rank 0, by message elsewhere. */
static long worker_ask(const struct worker *w, const long *ask)
{
    if (w->world_rank == 0) return dispatch_local(w->d, ask);
    long next;
    SN_MPI_CHECK(MPI_Send(ask, ASK_LEN, MPI_LONG, 0, TAG_ASK, w->chan));
    SN_MPI_CHECK(MPI_Recv(&next, 1, MPI_LONG, 0, TAG_UNIT, w->chan, MPI_STATUS_IGNORE));
    return next;
}

static void worker_loop(const struct worker *w)
{
    long ask[ASK_LEN] = {-1, 0, 0, w->group_id};
    for (;;) {
        /* the root gets the next unit and prepares its folder */
        long info[2] = {-1, 0}; /* unit, begun */
        if (w->group_rank == 0) {
            info[0] = worker_ask(w, ask);
            if (info[0] >= 0) {
                char dir[4096];
                const struct sweep_unit *u = &w->s->units[info[0]];
                info[1] = runstate_unit_dir(w->run_dir, u, dir, sizeof dir) == SN_OK &&
                          unit_begin(w, u, dir) == SN_OK;
                if (!info[1]) log_error("unit %s: %s", u->id, sn_last_error());
            }
        }
        SN_MPI_CHECK(MPI_Bcast(info, 2, MPI_LONG, 0, w->group));
        if (info[0] < 0) return;

        double seconds;
        int done = unit_execute(w, (int)info[0], (int)info[1], &seconds);
        ask[ASK_UNIT] = info[0];
        ask[ASK_OK] = done;
        ask[ASK_MILLIS] = (long)(seconds * 1000.0 + 0.5);
    }
}

/* ---------------------------------------------------------------------------
 * The whole run */

static int groups_check(const struct sched_opts *o, int size, int *n_groups)
{
    int provided = MPI_THREAD_SINGLE;
    SN_MPI_CHECK(MPI_Query_thread(&provided));
    if (o->group_size < 1 || size % o->group_size)
        return sn_error("sweep.group_size = %d does not divide the %d MPI ranks",
                        o->group_size, size);
    *n_groups = size / o->group_size;
    if (*n_groups > 1 && provided < MPI_THREAD_MULTIPLE)
        return sn_error("several groups need MPI_THREAD_MULTIPLE (rank 0 hands out "
                        "units from a thread); this MPI provides level %d",
                        provided);
    if (o->n_shards < 1 || o->shard < 0 || o->shard >= o->n_shards)
        return sn_error("shard %d/%d is not a valid slice", o->shard, o->n_shards);
    return SN_OK;
}

/* Rank 0: plan, write the first index, fill the dispatcher. */
static void dispatch_init(struct dispatch *d, const struct sweep *s, const char *run_dir,
                          const struct sched_opts *o, int n_groups, MPI_Comm comm)
{
    memset(d, 0, sizeof *d);
    d->s = s;
    d->run_dir = run_dir;
    d->o = o;
    d->comm = comm;
    d->n_remote = n_groups - 1;
    d->t0 = d->last_progress = sn_now();
    pthread_mutex_init(&d->mu, NULL);

    d->st = sn_calloc((size_t)s->n_units, sizeof *d->st);
    char(*why)[256] = sn_calloc((size_t)s->n_units, sizeof *why);
    sched_plan(s, run_dir, o, d->st, why);
    runstate_keep_seconds(run_dir, s, d->st);
    for (int i = 0; i < s->n_units; i++) {
        if (!sched_in_shard(o, i)) continue;
        d->n_shard++;
        if (d->st[i].state == UNIT_DONE)
            d->skipped++;
        else if (why[i][0])
            log_info("unit %s: to redo (%s)", s->units[i].id, why[i]);
    }
    sn_free(why);
    d->queue = queue_build(s, d->st, o, &d->n_queue);
    log_info("sweep: %d units, %d in this shard: %d already done, %d to run on %d "
             "group(s)",
             s->n_units, d->n_shard, d->skipped, d->n_queue, n_groups);
    dispatch_index(d, 1);
}

/* Rank 0, at the end: other shards' units as they are now on disk. */
static void dispatch_final(struct dispatch *d)
{
    if (d->o->n_shards > 1) {
        struct unit_status *now = sn_calloc((size_t)d->s->n_units, sizeof *now);
        sched_plan(d->s, d->run_dir, d->o, now, NULL);
        runstate_keep_seconds(d->run_dir, d->s, now);
        for (int i = 0; i < d->s->n_units; i++)
            if (!sched_in_shard(d->o, i)) d->st[i] = now[i];
        sn_free(now);
    }
    dispatch_index(d, 1);
    dispatch_progress(d, 1);
}

static void dispatch_free(struct dispatch *d)
{
    pthread_mutex_destroy(&d->mu);
    sn_free(d->st);
    sn_free(d->queue);
}

int sched_run(const struct sweep *s, const char *run_dir, const struct sched_opts *o,
              MPI_Comm world, struct sched_result *res)
{
    struct worker w = {.s = s, .run_dir = run_dir, .o = o, .world = world};
    int size, n_groups = 1;
    SN_MPI_CHECK(MPI_Comm_rank(world, &w.world_rank));
    SN_MPI_CHECK(MPI_Comm_size(world, &size));
    memset(res, 0, sizeof *res);
    if (groups_check(o, size, &n_groups) != SN_OK) return SN_EUSER;

    /* groups of consecutive ranks; the scheduler's own message channel */
    w.group_id = w.world_rank / o->group_size;
    SN_MPI_CHECK(MPI_Comm_split(world, w.group_id, w.world_rank, &w.group));
    SN_MPI_CHECK(MPI_Comm_rank(w.group, &w.group_rank));
    SN_MPI_CHECK(MPI_Comm_dup(world, &w.chan));

    /* rank 0 plans and answers the other groups from a thread */
    struct dispatch d;
    pthread_t thread;
    if (w.world_rank == 0) {
        w.d = &d;
        dispatch_init(&d, s, run_dir, o, n_groups, w.chan);
        if (d.n_remote > 0 && pthread_create(&thread, NULL, dispatch_thread, &d) != 0)
            sn_fatal("cannot start the dispatcher thread");
    }
    worker_loop(&w);

    /* everyone is idle: final index, the same result on every rank */
    int counts[5] = {0};
    if (w.world_rank == 0) {
        if (d.n_remote > 0) pthread_join(thread, NULL);
        dispatch_final(&d);
        int c[5] = {s->n_units, d.n_shard, d.skipped, d.finished, d.failed};
        memcpy(counts, c, sizeof c);
        dispatch_free(&d);
    }
    SN_MPI_CHECK(MPI_Bcast(counts, 5, MPI_INT, 0, world));
    *res = (struct sched_result){counts[0], counts[1], counts[2], counts[3], counts[4]};
    SN_MPI_CHECK(MPI_Comm_free(&w.chan));
    SN_MPI_CHECK(MPI_Comm_free(&w.group));
    return SN_OK;
}
