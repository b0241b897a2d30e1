/* Configuration: defaults from the specification, YAML overrides, and one
 * clear error naming file, line and key for every kind of bad input. */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/config.h"
#include "testutil.h"

static struct sn_config cfg;

static int load(const char *text)
{
    config_defaults(&cfg);
    return config_load_string(&cfg, text, "exp.yaml");
}

static void test_defaults(void)
{
    config_defaults(&cfg);
    TU_CHECK(cfg.data.resize == 448 && cfg.data.crop == 392);
    TU_CHECK(cfg.features.grid == 49 && cfg.features.dim == 512);
    TU_CHECK(cfg.features.pool_dim == 1024);
    TU_CHECK(cfg.bank.coreset == 10000 && cfg.bank.knn_k == 3 && cfg.bank.proj_dim == 128);
    TU_CHECK(cfg.matching.self_ref_percent == 75);
    TU_CHECK(cfg.decoder.embed == 128 && cfg.decoder.d_state == 4);
    TU_CHECK(cfg.decoder.d_conv == 4 && cfg.decoder.expand == 2);
    TU_CHECK(cfg.decoder.dilations.n == 4 && cfg.decoder.dilations.v[3] == 24);
    TU_CHECK(cfg.train.lr == 1e-3 && cfg.train.weight_decay == 0.05);
    TU_CHECK(cfg.train.cycle == 100 && cfg.train.jitter == 30);
    TU_CHECK(cfg.train.nav_alpha == 0.5 && cfg.train.head_alpha == 0.25);
    TU_CHECK(cfg.train.nav_gamma == 4 && cfg.train.head_gamma == 4);
    TU_CHECK(cfg.predict.smooth_sigma == 4 && cfg.predict.score_pool == 16);
    TU_CHECK(cfg.backbone.layers.n == 8 && cfg.backbone.layers.v[0] == 1);
    TU_CHECK(!strcmp(cfg.backbone.arch, "dinov2_vitb14_reg"));
    TU_CHECK(cfg.sweep.fewshot_k == 4);
}

static void test_overrides(void)
{
    TU_CHECK(load("train:\n  steps: 120\n  lr: 2.5e-4\ndata:\n  classes: [bottle, "
                  "tile]\nmatching:\n  hybrid: false\n") == SN_OK);
    TU_CHECK(cfg.train.steps == 120 && cfg.train.lr == 2.5e-4);
    TU_CHECK(cfg.data.classes.n == 2 && !strcmp(cfg.data.classes.v[1], "tile"));
    TU_CHECK(cfg.matching.hybrid == 0);
    TU_CHECK(cfg.train.batch == 8); /* untouched keys keep their defaults */

    TU_CHECK(load("decoder:\n  dilations:\n    - 2\n    - 4\n") == SN_OK);
    TU_CHECK(cfg.decoder.dilations.n == 2 && cfg.decoder.dilations.v[1] == 4);

    TU_CHECK(config_set(&cfg, "bank.coreset", "100000") == SN_OK);
    TU_CHECK(cfg.bank.coreset == 100000);
    TU_CHECK(config_set(&cfg, "decoder.dilations", "[1, 2, 3]") == SN_OK);
    TU_CHECK(cfg.decoder.dilations.n == 3 && cfg.decoder.dilations.v[2] == 3);
    TU_CHECK(load("") == SN_OK); /* an empty file means all defaults */
}

static void test_grid(void)
{
    TU_CHECK(load("sweep:\n  grid:\n    matching.hybrid: [true, false]\n"
                  "    decoder.dilations: [[3, 6], [12]]\n") == SN_OK);
    TU_CHECK(cfg.sweep.n_axes == 2);
    TU_CHECK(!strcmp(cfg.sweep.axes[0].key, "matching.hybrid"));
    TU_CHECK(cfg.sweep.axes[0].values.n == 2);
    TU_CHECK(!strcmp(cfg.sweep.axes[1].values.v[0], "[3, 6]"));
    TU_CHECK_ERR(load("sweep:\n  grid:\n    train.nope: [1, 2]\n"),
                 "exp.yaml:3: unknown key 'train.nope'");
    TU_CHECK_ERR(load("sweep:\n  grid:\n    train.steps: [1, x]\n"),
                 "train.steps expects an integer, got 'x'");
}

/* Each bad input and the text its error must contain. */
static void test_bad_inputs(void)
{
    static const char *cases[][2] = {
        {"train:\n  stepz: 3\n", "exp.yaml:2: unknown key 'train.stepz'"},
        {"trian:\n  steps: 3\n", "exp.yaml:1: unknown section 'trian'"},
        {"train:\n  steps: many\n", "exp.yaml:2: train.steps expects an integer"},
        {"train:\n  lr: fast\n", "exp.yaml:2: train.lr expects a number"},
        {"matching:\n  hybrid: maybe\n", "matching.hybrid expects true or false"},
        {"train:\n  lr: -1\n", "exp.yaml:2: train.lr = -1 is out of range"},
        {"matching:\n  self_ref_percent: 150\n", "self_ref_percent = 150 is out of range"},
        {"backbone:\n  arch: vgg16\n", "backbone.arch must be one of"},
        {"train:\n  steps: [1, 2]\n", "train.steps expects a single value, got a list"},
        {"decoder:\n  dilations: [3, x]\n", "decoder.dilations expects integers"},
        {"sweep:\n  settings: [single, zero]\n", "unknown value 'zero'"},
        {"data:\n  crop: 500\n", "data.crop (500) is larger than data.resize (448)"},
        {"run:\n  name: ~\n", "exp.yaml:2: run.name is null"},
        {"sweep:\n  grid:\n    bank.knn_k: [1, 3]\n    switches: [\"train.jitter=0; "
         "bank.knn_k=2\"]\n",
         "exp.yaml:3: sweep.grid sets bank.knn_k both as an axis and in switches"},
        {"sweep:\n  seeds: [0, 1, 0]\n", "exp.yaml:2: sweep.seeds lists 0 twice"},
        {"sweep:\n  methods: [snarm, patchcore, snarm]\n", "sweep.methods lists 'snarm' twice"},
        {"run:\n  out_dir: \"\"\n", "exp.yaml:2: run.out_dir is empty"},
        {"run:\n  seed: 1\n---\nrun:\n  seed: 2\n", "exp.yaml:4: a second YAML document"},
        {"bank:\n  coreset: 2\n  knn_k: 3\n",
         "exp.yaml:3: bank.knn_k (3) is larger than bank.coreset (2)"},
        {"train: [1, 2]\n", "section 'train' must be a mapping"},
        {"- a\n- b\n", "the top level must be a mapping"},
        {"train:\n  steps: 3\n   lr: 2\n", "exp.yaml:3: YAML syntax error"},
        {"train:\n  steps: 3\n  steps: 4\n", "exp.yaml:3: key 'train.steps' is given twice"},
        {"train: {steps: 3}\ntrain: {lr: 1}\n", "exp.yaml:2: section 'train' is given twice"},
    };
    for (size_t i = 0; i < SN_ARRAY_LEN(cases); i++)
        TU_CHECK_ERR(load(cases[i][0]), cases[i][1]);
}

/* A grid whose values hold commas, brackets, colons and '#' is printed so
 * that it reads back as the same grid. */
static void test_grid_roundtrip(void)
{
    TU_CHECK(load("sweep:\n  grid:\n    backbone.layers: [[1, 2], [3, 4]]\n"
                  "    switches: [\"backbone.weights=a, b # c: d.safetensors; "
                  "data.classes=[x, y]\", \"bank.knn_k=3\"]\n") == SN_OK);
    char *text = config_to_string(&cfg);
    TU_CHECK(strstr(text, "    backbone.layers: [[1, 2], [3, 4]]\n") != NULL);
    struct sn_config *again = sn_malloc(sizeof *again);
    config_defaults(again);
    TU_CHECK(config_load_string(again, text, "printed.yaml") == SN_OK);
    TU_CHECK(again->sweep.n_axes == 2 && again->sweep.axes[1].values.n == 2);
    TU_CHECK(!strcmp(again->sweep.axes[1].values.v[0],
                     "backbone.weights=a, b # c: d.safetensors; data.classes=[x, y]"));
    char *text2 = config_to_string(again);
    TU_CHECK(!strcmp(strchr(text, '\n'), strchr(text2, '\n')));
    sn_free(text);
    sn_free(text2);
    sn_free(again);
}

static void test_print_roundtrip(void)
{
    TU_CHECK(load("train:\n  steps: 77\ndata:\n  roots: [\"/data/a b\", x]\n") == SN_OK);
    char *text = config_to_string(&cfg);
    struct sn_config *again = sn_malloc(sizeof *again);
    config_defaults(again);
    TU_CHECK(config_load_string(again, text, "printed.yaml") == SN_OK);
    TU_CHECK(again->train.steps == 77);
    TU_CHECK(!strcmp(again->data.roots.v[0], "/data/a b"));
    char *text2 = config_to_string(again);
    /* The header names the source, so compare from the first section on. */
    TU_CHECK(!strcmp(strchr(text, '\n'), strchr(text2, '\n')));
    char *part = config_sections_string(&cfg, "data,features");
    TU_CHECK(strstr(part, "data:\n") && strstr(part, "features:\n"));
    TU_CHECK(!strstr(part, "train:"));
    sn_free(part);
    sn_free(text);
    sn_free(text2);
    sn_free(again);
}

static void test_file_errors(void)
{
    config_defaults(&cfg);
    TU_CHECK_ERR(config_load(&cfg, "/nonexistent/exp.yaml"), "/nonexistent/exp.yaml");
}

int main(void)
{
    test_defaults();
    test_overrides();
    test_grid();
    test_bad_inputs();
    test_grid_roundtrip();
    test_print_roundtrip();
    test_file_errors();
    return tu_finish("test_config");
}
