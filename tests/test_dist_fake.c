/*
 * test_dist_fake.c - in-memory datasets for the sweep tests.
 */
#include "test_dist_fake.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"

static void fake_sample(struct ds_sample *s, const char *root, const char *cls,
                        const char *split, int i, int defective)
{
    char path[512];
    const char *kind = defective ? "scratch" : "good";
    snprintf(path, sizeof path, "%s/%s/%s/%s/%03d.png", root, cls, split, kind, i);
    s->path = sn_strdup(path);
    s->defect = sn_strdup(kind);
    s->label = defective;
    if (defective) {
        snprintf(path, sizeof path, "%s/%s/ground_truth/%s/%03d_mask.png", root, cls,
                 kind, i);
        s->mask_path = sn_strdup(path);
    }
}

void fake_dataset(struct ds_dataset *ds, const char *name, int n_classes, int n_train,
                  int n_test)
{
    char root[256];
    snprintf(root, sizeof root, "/fake/%s", name);
    memset(ds, 0, sizeof *ds);
    ds->root = sn_strdup(root);
    ds->name = sn_strdup(name);
    snprintf(ds->format, sizeof ds->format, "mvtec");
    ds->n_classes = n_classes;
    ds->classes = sn_calloc((size_t)n_classes, sizeof *ds->classes);
    for (int c = 0; c < n_classes; c++) {
        struct ds_class *k = &ds->classes[c];
        char cname[32];
        snprintf(cname, sizeof cname, "c%d", c);
        k->name = sn_strdup(cname);
        k->n_train = n_train + c;
        k->n_test = n_test;
        k->train = sn_calloc((size_t)k->n_train, sizeof *k->train);
        k->test = sn_calloc((size_t)n_test, sizeof *k->test);
        for (int i = 0; i < k->n_train; i++)
            fake_sample(&k->train[i], root, cname, "train", i, 0);
        for (int i = 0; i < n_test; i++) {
            fake_sample(&k->test[i], root, cname, "test", i, i % 2);
            if (i % 2)
                k->n_test_defect++;
            else
                k->n_test_good++;
        }
    }
}
