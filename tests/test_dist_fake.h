/*
 * test_dist_fake.h - in-memory datasets for the sweep tests: classes with
 * file names but no files, enough for expansion and image selection (which
 * never open an image).
 */
#ifndef SNARM_TEST_DIST_FAKE_H
#define SNARM_TEST_DIST_FAKE_H

#include "data/dataset.h"

/* A dataset ROOT=/fake/<name> with n_classes classes "c0", "c1", ...;
 * class c has n_train + c training images and n_test test images, every
 * second one defective. Release with dataset_free(). */
void fake_dataset(struct ds_dataset *ds, const char *name, int n_classes, int n_train,
                  int n_test);

#endif
