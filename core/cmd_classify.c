/*
 * snarm classify: the top ImageNet classes of images with a ViT that has a
 * class head (e.g. timm ViT-Ti/16). A check that the ViT forward pass is
 * right on real pretrained weights.
 *
 * The standard evaluation transform of timm ViTs: resize the shorter side
 * to 248 with antialiased bicubic interpolation (as PIL), centre-crop
 * 224 x 224, scale to [0, 1], normalise with the architecture's mean / std.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/image.h"
#include "log.h"
#include "safetensors.h"
#include "vit.h"

struct classify_opts {
    const char *weights, *arch, *labels;
    long top, size, resize;
};

/* Shorter side to resize (torchvision's rounding), centre crop size,
 * normalise: CHW out. */
static int classify_preprocess(const char *path, const struct classify_opts *o,
                               const struct vit_config *vc, float *chw)
{
    struct sn_image img;
    int rc = image_load(path, &img);
    if (rc) return rc;
    int w = img.w, h = img.h, rs = (int)o->resize, cs = (int)o->size;
    int dw = w <= h ? rs : (int)((long)rs * w / h);
    int dh = w <= h ? (int)((long)rs * h / w) : rs;
    float *big = sn_malloc(sizeof(float) * (size_t)dw * dh * 3);
    image_resize_bicubic_aa(img.rgb, w, h, 3, big, dw, dh);
    image_free(&img);

    /* Centre crop, offsets rounded half to even as Python's round(). */
    int top = (int)nearbyint((dh - cs) / 2.0), left = (int)nearbyint((dw - cs) / 2.0);
    float *crop = sn_malloc(sizeof(float) * (size_t)cs * cs * 3);
    for (int y = 0; y < cs; y++)
        memcpy(crop + (size_t)y * cs * 3, big + ((size_t)(y + top) * dw + left) * 3,
               sizeof(float) * (size_t)cs * 3);
    image_normalise_chw(crop, cs, cs, vc->mean, vc->std, chw);
    sn_free(big);
    sn_free(crop);
    return SN_OK;
}

/* Class names, one per line; NULL entries where the file is short. */
static char **classify_labels(const char *path, int n)
{
    char **names = sn_calloc((size_t)n, sizeof *names);
    if (!path) return names;
    size_t len;
    char *text = sn_read_file(path, &len);
    if (!text) {
        log_warn("cannot read class names from %s; printing indices only", path);
        return names;
    }
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    for (int i = 0; i < n && line; i++, line = strtok_r(NULL, "\n", &save))
        names[i] = sn_strdup(line);
    sn_free(text);
    return names;
}

static void classify_print(const char *path, const float *logits, int n, int top,
                           char **names)
{
    /* Softmax probabilities, then the top classes by selection. */
    float mx = logits[0], sum = 0;
    for (int i = 1; i < n; i++)
        mx = fmaxf(mx, logits[i]);
    for (int i = 0; i < n; i++)
        sum += expf(logits[i] - mx);
    printf("%s\n", path);
    char *used = sn_calloc((size_t)n, 1);
    for (int k = 0; k < top && k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (best < 0 || logits[i] > logits[best])) best = i;
        used[best] = 1;
        printf("  %d. %4d %-28s %6.2f %%\n", k + 1, best, names[best] ? names[best] : "",
               100.0 * expf(logits[best] - mx) / sum);
    }
    sn_free(used);
}

static int classify_run(const struct classify_opts *o, char **images, int count)
{
    struct vit_config vc;
    struct st_file *f;
    struct vit *v;
    if (vit_config_for_arch(o->arch, &vc)) return cli_fail();
    if (st_open(o->weights, &f)) return cli_fail();
    int rc = vit_load(&vc, f, &v);
    st_close(f);
    if (rc) return cli_fail();
    if (!vit_config_of(v)->n_classes) {
        vit_free(v);
        sn_error("%s has no classification head (head.weight)", o->weights);
        return cli_fail();
    }

    int nc = vit_config_of(v)->n_classes, size = (int)o->size;
    char **names = classify_labels(o->labels, nc);
    float *chw = sn_malloc(sizeof(float) * 3 * (size_t)size * size);
    float *logits = sn_malloc(sizeof(float) * (size_t)nc);
    for (int i = 0; i < count && !rc; i++) {
        rc = classify_preprocess(images[i], o, &vc, chw);
        if (!rc) rc = vit_classify(v, chw, 1, size, logits);
        if (!rc) classify_print(images[i], logits, nc, (int)o->top, names);
    }
    for (int i = 0; i < nc; i++)
        sn_free(names[i]);
    sn_free(names);
    sn_free(chw);
    sn_free(logits);
    vit_free(v);
    return rc ? cli_fail() : CLI_OK;
}

static int classify_usage(FILE *out)
{
    fprintf(out,
            "usage: snarm classify --weights FILE [options] IMAGE...\n\n"
            "Top ImageNet classes of each image with a ViT classifier (safetensors).\n\n"
            "  --weights FILE   safetensors file with a class head (required)\n"
            "  --arch NAME      architecture (default vit_tiny_patch16)\n"
            "  --labels FILE    class names, one per line, to print with the indices\n"
            "  --top K          classes to print (default 5)\n"
            "  --resize N       shorter side before the crop (default 248)\n"
            "  --size N         centre crop, the network input (default 224)\n");
    return out == stdout ? CLI_OK : CLI_EUSAGE;
}

int cmd_classify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, 0, 'w'}, {"arch", required_argument, 0, 'a'},
        {"labels", required_argument, 0, 'l'},  {"top", required_argument, 0, 't'},
        {"resize", required_argument, 0, 'r'},  {"size", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    struct classify_opts o = {NULL, "vit_tiny_patch16", NULL, 5, 224, 248};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        if (c == 'w')
            o.weights = optarg;
        else if (c == 'a')
            o.arch = optarg;
        else if (c == 'l')
            o.labels = optarg;
        else if (c == 't')
            bad = cli_parse_long("classify", "--top", optarg, &o.top);
        else if (c == 'r')
            bad = cli_parse_long("classify", "--resize", optarg, &o.resize);
        else if (c == 's')
            bad = cli_parse_long("classify", "--size", optarg, &o.size);
        else if (c == 'h')
            return classify_usage(stdout);
        else
            return cli_bad_option("classify", argv);
        if (bad) return bad;
    }
    if (!o.weights) return cli_usage("classify", "--weights FILE is required");
    if (optind >= argc) return cli_usage("classify", "no images given");
    if (o.top < 1 || o.size < 16 || o.resize < o.size)
        return cli_usage("classify", "need --top >= 1 and --resize >= --size >= 16");
    return classify_run(&o, argv + optind, argc - optind);
}
