/*
 * dataset.h - finding the images, masks and splits of an anomaly dataset.
 *
 * Three layouts are read ("format"):
 *
 *   mvtec    ROOT/CLASS/train/good/<img>, ROOT/CLASS/test/<defect|good>/<img>,
 *            ROOT/CLASS/ground_truth/<defect>/<stem>_mask.png
 *   mvtec3d  ROOT/CLASS/train/good/rgb/<img>, ROOT/CLASS/test/<defect|good>/rgb/<img>,
 *            masks ROOT/CLASS/test/<defect>/gt/<stem>.png (RGB images only;
 *            the xyz point clouds are ignored)
 *   visa     ROOT/split_csv/1cls.csv with the header object,split,label,image,
 *            mask (split train|test, label normal|anomaly, paths relative to
 *            ROOT; the mask column is empty for normal images)
 *   auto     visa when split_csv/1cls.csv exists, mvtec3d when a class's
 *            train/good holds an rgb/ folder, else mvtec.
 *
 * A class folder is any sub-folder of ROOT holding train/ or test/. Image
 * files are those ending in .png, .jpg or .jpeg (any case). Classes and the
 * images inside each split are sorted by name (strcmp order), so the order
 * is the same on every machine.
 *
 * dataset_open() checks everything it lists and reports every problem at
 * once (missing mask, mask of another size than its image, unreadable
 * image or mask, empty train or test split), one per line in a single
 * sn_error message with the offending paths. A defective test image whose
 * mask is all zero is allowed; it is recorded (empty_mask = 1) and counted.
 * Opening reads each image's header and decodes each mask once.
 */
#ifndef SNARM_DATASET_H
#define SNARM_DATASET_H

struct ds_sample {
    char *path;      /* the image */
    char *mask_path; /* NULL for good images (their mask is all zero) */
    char *defect;    /* "good" or the defect type */
    int label;       /* 0 good, 1 defective */
    int empty_mask;  /* 1: defective, but the mask has no defect pixel */
};

struct ds_class {
    char *name;
    int n_train;
    struct ds_sample *train; /* train/good only */
    int n_test;
    struct ds_sample *test;
    int n_test_good, n_test_defect, n_empty_masks;
};

struct ds_dataset {
    char *root;
    char *name;      /* basename of root */
    char format[16]; /* the resolved format: mvtec, mvtec3d or visa */
    int n_classes;
    struct ds_class *classes;
};

int dataset_open(const char *root, const char *format, struct ds_dataset *ds);
/* As dataset_open, but every image is decoded fully instead of its header
 * alone, so that truncated or corrupt image data is listed with the other
 * problems in the same message. */
int dataset_open_decoded(const char *root, const char *format, struct ds_dataset *ds);
void dataset_free(struct ds_dataset *ds);
/* The class of that name, or NULL. */
const struct ds_class *dataset_class(const struct ds_dataset *ds, const char *name);

/* The distinct defect types of a class's test split, sorted, "good" excluded;
 * fills up to cap names (pointers into the samples) and returns the count. */
int dataset_defect_types(const struct ds_class *c, const char **names, int cap);

#endif
