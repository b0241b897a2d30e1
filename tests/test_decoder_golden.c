/*
 * test_decoder_golden.c - the C decoder against tests/ref_decoder.py.
 *
 * The reference file holds random weights (norm and BatchNorm affines moved
 * off 1/0, running statistics off 0/1), three batches of inputs and, from
 * PyTorch in float64: the eval-mode waypoint map, self references, intra
 * residual and all 16 head maps; then for three training steps (the active
 * branch switching after two) the same quantities in train mode, both loss
 * terms, the gradient of every parameter of the navigator and the active
 * branch, and the parameters and BatchNorm statistics after each AdamW step.
 * Sizes: grid 7, d 16, e 8, output 21, batch 2, dilations 2 3 6 24 (the last
 * leaves only the centre tap inside the grid), dropout off.
 *
 * Tolerances. C runs in float32 against a float64 reference, so the
 * differences are float32 rounding carried through the model: about 1e-6
 * relative per value for the maps and losses. Gradients are sums over
 * cells and pixels of products through two SMBs, four heads and up to 600
 * pixels per map, so each tensor is compared with an absolute tolerance of
 * 1e-4 times its largest reference entry (entries far below the tensor's
 * scale carry mostly cancellation noise) plus 1e-3 relative. After AdamW,
 * parameters move by about lr = 1e-3 per step and an update divides m by
 * sqrt(v), which amplifies the gradients' relative error only for entries
 * with tiny gradients; 2e-6 absolute plus 1e-4 relative covers that.
 *
 * One exception is exact: the bias of each head's conv3x3 feeds a train-mode
 * BatchNorm, which removes it, so its true gradient is zero and both sides
 * hold rounding noise (1e-18 in float64, 1e-10 in float32). Those tensors
 * are checked to be zero within 1e-6 of the step's largest gradient; AdamW
 * moves their entries by up to lr per step in a direction set by the noise,
 * so after the steps they are compared with lr x steps, and the running
 * mean of the BatchNorm they feed (momentum 0.1) with 0.1 lr x steps.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/config.h"
#include "core/decoder.h"
#include "kernels/layers.h"
#include "testutil.h"

#define B 2
#define STEPS 3
#define CYCLE 2

static const char *ref;
/* A conv bias in front of a train-mode BatchNorm: zero true gradient. */
static int noise_only(const struct decoder_tensor *t)
{
    return strstr(t->name, ".head") && sn_ends_with(t->name, ".conv.b");
}

static void golden_config(struct sn_config *cfg)
{
    config_defaults(cfg);
    TU_CHECK(config_set(cfg, "features.grid", "7") == SN_OK);
    TU_CHECK(config_set(cfg, "features.dim", "16") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.embed", "8") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.dilations", "[2, 3, 6, 24]") == SN_OK);
    TU_CHECK(config_set(cfg, "decoder.dropout", "0") == SN_OK);
    TU_CHECK(config_set(cfg, "data.crop", "21") == SN_OK);
}

static float *read_ref(const char *name, long want)
{
    long n = 0;
    float *v = tu_ref_read(ref, name, &n);
    if (v && n != want) {
        TU_CHECK_MSG(0, "%s has %ld values, expected %ld", name, n, want);
        free(v);
        return NULL;
    }
    return v;
}

static void close_ref(const char *name, const float *got, long n, double atol,
                      double rtol)
{
    float *want = read_ref(name, n);
    if (want) TU_CLOSE(name, got, want, n, atol, rtol);
    free(want);
}

/* Load a group of tensors (params or buffers) written by the reference. */
static void load_group(struct decoder *dec, const char *group, int buffers)
{
    hid_t f = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
    TU_CHECK(f >= 0);
    int st = buffers ? decoder_tensors_read(f, ref, group, dec->buffer_tensors,
                                            dec->n_buffer_tensors, dec->buffers)
                     : decoder_tensors_read(f, ref, group, dec->tensors, dec->n_tensors,
                                            dec->params);
    TU_CHECK_MSG(st == SN_OK, "loading %s: %s", group, sn_last_error());
    H5Fclose(f);
}

static void check_dims(const struct decoder_dims *dd)
{
    hid_t f = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
    int st = decoder_dims_check(f, ref, dd);
    TU_CHECK_MSG(st == SN_OK, "dimensions: %s", sn_last_error());
    H5Fclose(f);
}

struct batch {
    float *f, *R;
    uint8_t *mask;
};

static void load_batch(struct batch *bt, int k, const struct decoder_dims *dd)
{
    char name[64];
    long nf = (long)B * dd->M * dd->d, nm = (long)B * dd->out * dd->out;
    snprintf(name, sizeof name, "input%d/f", k);
    bt->f = read_ref(name, nf);
    snprintf(name, sizeof name, "input%d/R", k);
    bt->R = read_ref(name, nf);
    snprintf(name, sizeof name, "input%d/mask", k);
    float *m = read_ref(name, nm);
    bt->mask = malloc((size_t)nm);
    for (long i = 0; m && i < nm; i++)
        bt->mask[i] = m[i] > 0.5f;
    free(m);
}

/* Waypoint map, self references and intra residual of the latest pass. */
static void check_matching(const struct decoder *dec, const char *pre)
{
    const struct decoder_dims *dd = &dec->dims;
    char name[64];
    long nm = (long)B * dd->M, ns = (long)B * dd->n_self;

    snprintf(name, sizeof name, "%s/Q", pre);
    close_ref(name, decoder_nav_prob(dec), nm, 1e-6, 1e-5);
    snprintf(name, sizeof name, "%s/Qstar", pre);
    close_ref(name, decoder_waypoint(dec), nm, 1e-6, 1e-5);
    snprintf(name, sizeof name, "%s/Rt", pre);
    close_ref(name, decoder_intra(dec), nm * dd->d, 1e-6, 1e-5);

    /* The self-reference set exactly. */
    snprintf(name, sizeof name, "%s/S", pre);
    float *want = read_ref(name, ns);
    const int *S = decoder_self_refs(dec);
    int same = want != NULL;
    for (long i = 0; want && i < ns; i++)
        same = same && S[i] == (int)want[i];
    TU_CHECK_MSG(same, "%s: self-reference set differs", name);
    free(want);
}

static void test_eval(struct decoder *dec, const struct batch *bt)
{
    const struct decoder_dims *dd = &dec->dims;
    long nh = (long)dd->branches * dd->scans, out2 = (long)dd->out * dd->out;
    float *maps = malloc(sizeof(float) * (size_t)(B * nh * out2));
    float *mean = malloc(sizeof(float) * (size_t)(B * out2));

    TU_CHECK(decoder_predict(dec, bt->f, bt->R, B, maps, mean) == SN_OK);
    check_matching(dec, "eval");
    close_ref("eval/maps", maps, B * nh * out2, 1e-5, 1e-4);

    /* The ensemble mean is the mean of the sixteen maps. */
    float *want = read_ref("eval/maps", B * nh * out2);
    float *m2 = calloc((size_t)(B * out2), sizeof(float));
    for (long i = 0; want && i < B; i++)
        for (long h = 0; h < nh; h++)
            for (long p = 0; p < out2; p++)
                m2[i * out2 + p] += want[(i * nh + h) * out2 + p] / (float)nh;
    TU_CLOSE("eval/mean", mean, m2, B * out2, 1e-5, 1e-4);
    free(want);
    free(m2);
    free(maps);
    free(mean);
}

/* The largest reference gradient of step k over the active tensors. */
static double grad_max(const struct decoder *dec, int k, int b)
{
    char name[128];
    double gmax = 0;
    for (int i = 0; i < dec->n_tensors; i++) {
        const struct decoder_tensor *t = &dec->tensors[i];
        if (t->branch != -1 && t->branch != b) continue;
        snprintf(name, sizeof name, "step%d/grads/%s", k, t->name);
        float *want = read_ref(name, t->count);
        for (long j = 0; want && j < t->count; j++)
            gmax = fmax(gmax, fabs(want[j]));
        free(want);
    }
    return gmax;
}

/* Compare every gradient of the navigator and branch b. */
static void check_grads(const struct decoder *dec, int k, int b)
{
    char name[128];
    int compared = 0;
    const double gmax = grad_max(dec, k, b);
    for (int i = 0; i < dec->n_tensors; i++) {
        const struct decoder_tensor *t = &dec->tensors[i];
        if (t->branch != -1 && t->branch != b) continue;
        snprintf(name, sizeof name, "step%d/grads/%s", k, t->name);
        float *want = read_ref(name, t->count);
        if (!want) continue;
        double scale = 0;
        for (long j = 0; j < t->count; j++)
            scale = fmax(scale, fabs(want[j]));
        if (noise_only(t)) {
            TU_CHECK_MSG(scale < 1e-12, "%s: reference gradient %g is not zero", name,
                         scale);
            TU_CLOSE(name, dec->grads + t->offset, want, t->count, 1e-6 * gmax, 0);
        } else {
            TU_CLOSE(name, dec->grads + t->offset, want, t->count, 1e-4 * scale, 1e-3);
        }
        free(want);
        compared++;
    }
    TU_CHECK_MSG(compared > 30, "only %d gradient tensors compared", compared);
}

/* Does the running mean `name` ("bX.headY.bn.mean") follow a noise-only
 * conv bias? */
static int mean_follows_noise(const struct decoder *dec, const char *name)
{
    char conv[DECODER_NAME];
    const char *dot = strstr(name, ".bn.mean");
    if (!dot) return 0;
    snprintf(conv, sizeof conv, "%.*s.conv.b", (int)(dot - name), name);
    const struct decoder_tensor *t = decoder_tensor_find(dec, conv);
    return t && noise_only(t);
}

static void check_params(const struct decoder *dec, int k)
{
    char name[128];
    const double lr = 1e-3;
    for (int i = 0; i < dec->n_tensors; i++) {
        const struct decoder_tensor *t = &dec->tensors[i];
        snprintf(name, sizeof name, "step%d/params/%s", k, t->name);
        close_ref(name, dec->params + t->offset, t->count,
                  noise_only(t) ? lr * (k + 1) : 2e-6, 1e-4);
    }
    for (int i = 0; i < dec->n_buffer_tensors; i++) {
        const struct decoder_tensor *t = &dec->buffer_tensors[i];
        snprintf(name, sizeof name, "step%d/buffers/%s", k, t->name);
        double atol = mean_follows_noise(dec, t->name) ? 0.1 * lr * (k + 1) : 1e-6;
        close_ref(name, dec->buffers + t->offset, t->count, atol, 1e-5);
    }
}

/* The head maps of the active branch as the reference stacks them. */
static void check_train_maps(const struct decoder *dec, const char *pre)
{
    const struct decoder_dims *dd = &dec->dims;
    long out2 = (long)dd->out * dd->out, n = (long)B * dd->scans * out2;
    float *maps = malloc(sizeof(float) * (size_t)n);
    char name[64];

    for (int s = 0; s < dd->scans; s++) {
        const float *lg = decoder_head_logits(dec, s);
        for (int i = 0; i < B; i++)
            for (long p = 0; p < out2; p++)
                maps[((long)i * dd->scans + s) * out2 + p] =
                    1.0f / (1.0f + expf(-lg[i * out2 + p]));
    }
    snprintf(name, sizeof name, "%s/maps", pre);
    close_ref(name, maps, n, 1e-5, 1e-4);
    snprintf(name, sizeof name, "%s/nav_up", pre);
    close_ref(name, decoder_nav_map(dec), B * out2, 1e-6, 1e-5);
    free(maps);
}

static void test_train(struct decoder *dec, struct batch *bt)
{
    struct adamw_config ac;
    long adam_steps[1 + DECODER_MAX_BRANCHES] = {0};
    float *m = calloc((size_t)dec->n_params, sizeof(float));
    float *v = calloc((size_t)dec->n_params, sizeof(float));
    adamw_config_default(&ac, 1e-3, 0.05);

    for (int k = 0; k < STEPS; k++) {
        int b = (k / CYCLE) % dec->dims.branches;
        char pre[32], name[64];
        struct decoder_loss loss;
        snprintf(pre, sizeof pre, "step%d", k);

        /* Forward, loss, backward of the navigator and branch b. */
        decoder_grads_zero(dec, b);
        TU_CHECK(decoder_forward_train(dec, bt[k].f, bt[k].R, B, b, 7, 0) == SN_OK);
        decoder_loss(dec, bt[k].mask, 1.0f, &loss);
        decoder_backward(dec);
        check_matching(dec, pre);
        check_train_maps(dec, pre);
        snprintf(name, sizeof name, "%s/loss_nav", pre);
        float want = (float)tu_ref_scalar(ref, name), got = (float)loss.nav;
        TU_CLOSE(name, &got, &want, 1, 1e-8, 1e-5);
        snprintf(name, sizeof name, "%s/loss_head", pre);
        want = (float)tu_ref_scalar(ref, name), got = (float)loss.head;
        TU_CLOSE(name, &got, &want, 1, 1e-8, 1e-5);
        check_grads(dec, k, b);

        /* AdamW on the navigator and the active branch, own step counts. */
        struct adamw_range r[2] = {
            {dec->nav_offset, dec->nav_count, ++adam_steps[0]},
            {dec->br_offset[b], dec->br_count[b], ++adam_steps[1 + b]}};
        adamw_update_ranges(dec->params, dec->grads, m, v, r, 2, &ac);
        check_params(dec, k);
    }
    free(m);
    free(v);
}

int main(void)
{
    ref = tu_ref_path("decoder.h5");
    FILE *fp = fopen(ref, "rb");
    if (!fp) tu_skip("no reference file %s (the ref_decoder fixture needs torch)", ref);
    fclose(fp);

    struct sn_config cfg;
    struct decoder_dims dd;
    struct decoder dec;
    golden_config(&cfg);
    TU_CHECK(decoder_dims_from_config(&dd, &cfg) == SN_OK);
    check_dims(&dd);
    decoder_init(&dec, &dd);
    load_group(&dec, "/init/params", 0);
    load_group(&dec, "/init/buffers", 1);
    decoder_reserve(&dec, B, 1);

    struct batch bt[STEPS];
    for (int k = 0; k < STEPS; k++)
        load_batch(&bt[k], k, &dd);
    test_eval(&dec, &bt[0]);
    test_train(&dec, bt);

    for (int k = 0; k < STEPS; k++) {
        free(bt[k].f);
        free(bt[k].R);
        free(bt[k].mask);
    }
    decoder_free(&dec);
    return tu_finish("decoder_golden");
}
