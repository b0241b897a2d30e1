/*
 * cmd_run.c - `snarm run FILE.yaml`: a sweep of units over MPI ranks, with
 * resumption, shards for job arrays, and the metric tables at the end.
 */
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "data/dataset.h"
#include "dist/collect.h"
#include "dist/comm.h"
#include "dist/sched.h"
#include "dist/stage_mock.h"
#include "dist/sweep.h"
#include "backbone.h"
#include "log.h"
#include "unit.h"

#define RUN_MAX_SETS 64

struct run_args {
    const char *file;
    char *sets[RUN_MAX_SETS];
    int n_sets;
    int resume, dry_run, collect_only, mock;
    int shard, n_shards;
    const char *log;
    double progress;
};

static void run_usage(FILE *out)
{
    fprintf(
        out,
        "usage: snarm run FILE.yaml [--resume] [--shard I/N] [--dry-run]\n"
        "                 [--collect-only] [--set section.key=value]... [--progress S]\n"
        "                 [--log L]\n\n"
        "Expand the experiment into units (dataset x setting x class or fold x\n"
        "method x seed x grid point) and run each: bank, training, prediction,\n"
        "metrics. Start it under mpirun or srun for many ranks: rank 0 hands out\n"
        "units to groups of sweep.group_size ranks as they become idle. Outputs go\n"
        "to run.out_dir (config.yaml, index.tsv, units/<id>/, tables/). A unit whose\n"
        "outputs exist and validate is skipped; a partial one is redone.\n\n"
        "options:\n"
        "  --resume         continue the run in run.out_dir: same experiment; only\n"
        "                   run.threads and run.log may differ\n"
        "  --shard I/N      run only units whose index is I modulo N (0 <= I < N),\n"
        "                   e.g. one job-array task each (implies --resume);\n"
        "                   tables are left to a later --collect-only\n"
        "  --dry-run        list the units and their states, write nothing\n"
        "  --collect-only   only gather the units' metrics into tables/\n"
        "  --set K=V        override one configuration key (repeatable)\n"
        "  --progress S     seconds between progress lines [10]\n"
        "  --log LEVEL      error, warn, info or debug [run.log]\n"
        "  -h, --help       this help\n\n"
        "test hook:\n"
        "  --stage-mock     replace each unit's pipeline by a fast deterministic\n"
        "                   stand-in (dist/stage_mock.h) to test the sweep machinery\n");
}

static int shard_parse(const char *s, int *i, int *n)
{
    char tail;
    if (sscanf(s, "%d/%d%c", i, n, &tail) != 2 || *n < 1 || *i < 0 || *i >= *n)
        return cli_usage("run", "--shard expects I/N with 0 <= I < N, got '%s'", s);
    return CLI_OK;
}

/* Returns -1 to go on, or the exit status. */
static int run_parse(int argc, char **argv, struct run_args *a)
{
    static const struct option opts[] = {
        {"resume", no_argument, NULL, 'r'},    {"shard", required_argument, NULL, 'S'},
        {"dry-run", no_argument, NULL, 'n'},   {"collect-only", no_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'}, {"progress", required_argument, NULL, 'p'},
        {"log", required_argument, NULL, 'l'}, {"stage-mock", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},      {0}};
    memset(a, 0, sizeof *a);
    a->n_shards = 1;
    a->progress = 10;
    optind = 1;
    int ch, st;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            run_usage(stdout);
            return CLI_OK;
        case 'r':
            a->resume = 1;
            break;
        case 'n':
            a->dry_run = 1;
            break;
        case 'c':
            a->collect_only = 1;
            break;
        case 'm':
            a->mock = 1;
            break;
        case 'l':
            a->log = optarg;
            break;
        case 'S':
            if ((st = shard_parse(optarg, &a->shard, &a->n_shards))) return st;
            break;
        case 'p':
            if ((st = cli_parse_double("run", "--progress", optarg, &a->progress)))
                return st;
            if (!(a->progress >= 0 && a->progress <= 1e9))
                return cli_usage("run", "--progress expects seconds >= 0, got '%s'", optarg);
            break;
        case 's':
            if (a->n_sets == RUN_MAX_SETS)
                return cli_usage("run", "too many --set options");
            a->sets[a->n_sets++] = optarg;
            break;
        default:
            return cli_bad_option("run", argv);
        }
    }
    if (argc - optind != 1) return cli_usage("run", "expects one experiment FILE.yaml");
    a->file = argv[optind];
    return -1;
}

/* ---------------------------------------------------------------------------
 * Set-up on every rank */

/* Every rank reaches the same verdict. Rank 0 prints the message at the
 * end; another rank logs its own only when rank 0 did not fail as well
 * (most errors, such as a bad key, happen on every rank alike). */
static int agree(int st)
{
    int bad = st != SN_OK, any = 0, root_bad = bad;
    SN_MPI_CHECK(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    SN_MPI_CHECK(MPI_Bcast(&root_bad, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (bad && !root_bad && sn_rank() != 0) log_error("%s", sn_last_error());
    if (any && !bad) sn_error("another rank failed (see its messages)");
    return any ? SN_EUSER : SN_OK;
}

static int config_setup(const struct run_args *a, struct sn_config *cfg)
{
    config_defaults(cfg);
    /* cli_apply_sets() checks across keys once the overrides are in */
    if (config_read(cfg, a->file) != SN_OK) return SN_EUSER;
    if (cli_apply_sets(cfg, a->n_sets, (char **)a->sets) != SN_OK) return SN_EUSER;
    if (!a->log) log_set_level((enum log_level)log_level_parse(cfg->run.log));
    if (!cfg->run.out_dir[0]) return sn_error("%s: run.out_dir is empty", a->file);
    return SN_OK;
}

static int datasets_open(const struct sn_config *cfg, struct ds_dataset **out)
{
    int n = cfg->data.roots.n;
    struct ds_dataset *ds = sn_calloc((size_t)SN_MAX(n, 1), sizeof *ds);
    *out = ds;
    for (int i = 0; i < n; i++)
        if (dataset_open(cfg->data.roots.v[i], cfg->data.format, &ds[i]) != SN_OK)
            return SN_EUSER;
    return SN_OK;
}

static void datasets_free(struct ds_dataset *ds, int n)
{
    for (int i = 0; ds && i < n; i++)
        dataset_free(&ds[i]);
    sn_free(ds);
}

/* ---------------------------------------------------------------------------
 * The stage each unit runs */

/* unit_outputs_valid() answers yes or no; the scheduler wants a status. */
static int pipeline_validate(const struct sweep_unit *u, const char *dir, void *ctx)
{
    if (unit_outputs_valid(u, dir, ctx)) return SN_OK;
    return sn_error("unit %s: outputs missing or unreadable in %s", u->id, dir);
}

/* The contexts of the two stages a unit can run. */
struct stage {
    struct unit_ctx pipeline;
    struct mock_ctx mock;
};

/* The unit pipeline (core/unit.h), or the stand-in of --stage-mock. The
 * feature stores are shared by every unit of the run, in its cache/. */
static void stage_pick(const struct run_args *a, const struct sn_config *cfg,
                       const struct sweep *s, struct stage *st, struct sched_opts *o)
{
    memset(o, 0, sizeof *o);
    o->group_size = cfg->sweep.group_size;
    o->shard = a->shard;
    o->n_shards = a->n_shards;
    o->progress_every = a->progress;
    st->pipeline.sweep = s;
    snprintf(st->pipeline.cache_dir, sizeof st->pipeline.cache_dir, "%s/cache",
             cfg->run.out_dir);
    st->mock.sweep = s;
    o->run = a->mock ? mock_unit_run : unit_run;
    o->validate = a->mock ? mock_unit_validate : pipeline_validate;
    o->ctx = a->mock ? (void *)&st->mock : (void *)&st->pipeline;
}

/* ---------------------------------------------------------------------------
 * The run */

static int run_collect(const struct sweep *s, const char *out_dir)
{
    int missing = 0;
    if (collect_tables(s, out_dir, &missing) != SN_OK) return SN_EUSER;
    printf("snarm run: tables in %s/tables (%d unit(s) without metrics)\n", out_dir,
           missing);
    return SN_OK;
}

static int run_units(const struct run_args *a, const struct sn_config *cfg,
                     const struct sweep *s, int rank)
{
    struct stage stage;
    struct sched_opts o;
    stage_pick(a, cfg, s, &stage, &o);
    if (a->dry_run) {
        if (rank == 0) sched_print_plan(s, cfg->run.out_dir, &o, stdout);
        return SN_OK;
    }
    struct sched_result r;
    if (sched_run(s, cfg->run.out_dir, &o, MPI_COMM_WORLD, &r) != SN_OK) return SN_EUSER;
    if (rank == 0)
        printf("snarm run: %d units, %d in this shard: %d already done, %d done now, "
               "%d failed\n",
               r.n_units, r.n_shard, r.n_skipped, r.n_done, r.n_failed);
    if (r.n_failed)
        return sn_error("%d unit(s) failed; their FAILED files under %s/units say why",
                        r.n_failed, cfg->run.out_dir);
    return SN_OK;
}

/* Say first, before anything else, when the backbone is not pretrained; a
 * missing weights file that may not be replaced stops the run at once rather
 * than failing every unit. */
static int weights_notice(const struct sn_config *cfg)
{
    const char *w = cfg->backbone.weights;
    if (sn_file_exists(w)) return SN_OK;
    if (strcmp(cfg->backbone.weights_missing, "random"))
        return sn_error("backbone weights %s not found (backbone.weights); give the "
                        "file, or set backbone.weights_missing: random for a labelled "
                        "random initialisation", *w ? w : "(none given)");
    printf("NOTE: backbone weights %s not found. This run uses a seeded RANDOM\n"
           "NOTE: initialisation of %s (seed %ld); every output and table is labelled\n"
           "NOTE: 'RANDOM INIT'. Its numbers test the machinery, not the method.\n",
           *w ? w : "(none given)", cfg->backbone.arch, cfg->run.seed);
    fflush(stdout);
    return SN_OK;
}

/* Open the backbone of every distinct backbone configuration of the sweep
 * once, so that weights that do not fit the architecture or layers it does
 * not have stop the run with one message before any unit starts. */
static int backbones_check(const struct sweep *s)
{
    struct sn_config *c = sn_malloc(sizeof *c);
    char **seen = sn_calloc((size_t)s->n_grid + 1, sizeof *seen);
    int st = SN_OK;
    for (int g = 0; st == SN_OK && g < s->n_grid; g++) {
        sweep_grid_config(s, g, c);
        seen[g] = config_sections_string(c, "backbone,features,data,run");
        int again = 0;
        for (int h = 0; h < g; h++)
            again |= !strcmp(seen[h], seen[g]);
        if (again) continue;
        struct backbone *b = NULL;
        st = backbone_open(c, &b);
        if (st != SN_OK) {
            char why[1024], where[64] = "the backbone";
            snprintf(why, sizeof why, "%s", sn_last_error());
            if (s->n_grid > 1) snprintf(where, sizeof where, "grid point g%d", g);
            st = sn_error("%s: %s", where, why);
        }
        backbone_free(b);
    }
    for (int g = 0; g < s->n_grid; g++)
        sn_free(seen[g]);
    sn_free(seen);
    sn_free(c);
    return st;
}

static int run_main(const struct run_args *a, int rank)
{
    /* the resolved experiment, printed and stored by rank 0 */
    static struct sn_config cfg;
    int st = agree(config_setup(a, &cfg));
    /* the backbone's weights matter only when units really run */
    int real = !a->mock && !a->dry_run && !a->collect_only;
    if (st == SN_OK && real) st = agree(rank == 0 ? weights_notice(&cfg) : SN_OK);
    fflush(stdout);

    /* the datasets and the units, checked before anything is written */
    struct ds_dataset *ds = NULL;
    struct sweep s = {0};
    if (st == SN_OK) st = agree(datasets_open(&cfg, &ds));
    if (st == SN_OK) st = agree(sweep_expand(&s, &cfg, ds, cfg.data.roots.n));
    if (st == SN_OK && real) st = agree(rank == 0 ? backbones_check(&s) : SN_OK);
    if (st == SN_OK && rank == 0) {
        /* a plan or tables of a run folder are only those of its experiment */
        char *text = config_to_string(&cfg);
        if (!a->dry_run && !a->collect_only)
            st = runstate_open(cfg.run.out_dir, text, a->resume || a->n_shards > 1);
        else
            st = runstate_check_config(cfg.run.out_dir, text);
        char stored[4200];
        snprintf(stored, sizeof stored, "%s/config.yaml", cfg.run.out_dir);
        if (st == SN_OK && a->collect_only && !sn_file_exists(stored))
            st = sn_error("--collect-only: %s holds no run (no config.yaml)", cfg.run.out_dir);
        sn_free(text);
    }
    st = agree(st);
    /* the resolved experiment, once it is accepted */
    if (st == SN_OK && rank == 0) config_print(&cfg, stdout);
    fflush(stdout);

    if (st == SN_OK && !a->collect_only) st = run_units(a, &cfg, &s, rank);
    int tables = !a->dry_run && (a->collect_only || a->n_shards == 1);
    if (st == SN_OK && tables && rank == 0) st = run_collect(&s, cfg.run.out_dir);
    st = agree(st);
    sweep_free(&s);
    datasets_free(ds, cfg.data.roots.n);
    log_debug("run: %zu bytes still allocated, peak %zu", sn_bytes_in_use(),
              sn_bytes_peak());
    return st;
}

int cmd_run(int argc, char **argv)
{
    struct run_args a;
    int st = run_parse(argc, argv, &a);
    if (st >= 0) return st;
    if (a.log && (st = cli_set_log("run", a.log))) return st;

    /* MPI with threads: rank 0 hands out units from a second thread */
    int inited = 0, provided, rank, size;
    SN_MPI_CHECK(MPI_Initialized(&inited));
    if (!inited)
        SN_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided));
    SN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    SN_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    sn_set_rank(rank, size);

    st = run_main(&a, rank);
    if (st != SN_OK && rank == 0) cli_fail();
    if (!inited) MPI_Finalize();
    return st == SN_OK ? CLI_OK : CLI_EUSER;
}
