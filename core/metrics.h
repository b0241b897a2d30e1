/*
 * metrics.h - exact, threshold-free anomaly-detection metrics.
 *
 * Nothing is binned: every metric comes from one sort of the scores, and
 * every group of equal scores is one threshold, exactly as scikit-learn's
 * _binary_clf_curve treats ties (the curve steps over a whole group at once,
 * and the ROC segment across a group is a straight line).
 *
 *   I-AUROC  ROC AUC of the image scores against the image labels
 *            (sklearn.metrics.roc_auc_score).
 *   P-AUROC  ROC AUC over all pixels of all images of a class.
 *   P-AP     average precision over the same pixels, the step-wise sum
 *            sum_k (R_k - R_{k-1}) P_k (sklearn average_precision_score).
 *   PRO      area under the per-region-overlap curve up to a false positive
 *            rate of fpr_limit [0.3], divided by fpr_limit. Defect regions are
 *            the 8-connected components of each image's mask; each pixel of a
 *            region weighs 1 / (region area x number of regions of the class),
 *            so the curve's y value is the mean over regions of the covered
 *            fraction. x is the false positive rate over the defect-free
 *            pixels of all images. The curve starts at (0, 0), has one point
 *            per group of equal scores (descending), is integrated with the
 *            trapezoid rule, and the last segment is linearly interpolated at
 *            exactly x = fpr_limit.
 *
 * A metric that is undefined (one class only: no positives or no negatives,
 * no defect region for PRO) is NaN. Masks are binarised as value != 0.
 * Scores and maps must be finite (the maps reader checks this).
 */
#ifndef SNARM_METRICS_H
#define SNARM_METRICS_H

#include <stdint.h>

#include "maps.h"

#define METRICS_FPR_LIMIT 0.3 /* the PRO integration limit of the benchmarks */

/* ROC AUC as sklearn's roc_auc_score; NaN when labels hold one class only. */
double metric_auroc(const float *scores, const uint8_t *labels, long n);

/* Average precision as sklearn's average_precision_score; NaN without any
 * positive (sklearn warns that recall is undefined and returns 0 there; the
 * metric is undefined, so it is NaN here and left out of means); 1 when every
 * label is positive, as sklearn. */
double metric_ap(const float *scores, const uint8_t *labels, long n);

/* AUPRO of N maps and masks of H x W up to fpr_limit, normalised by it. */
double metric_aupro(const float *maps, const uint8_t *masks, int N, int H, int W,
                    double fpr_limit);

/* The three pixel metrics from a single shared sort (what metrics_compute
 * uses). Any output pointer may be NULL. */
struct metric_pixel {
    double p_auroc, p_ap, pro;
};
void metric_pixels(const float *maps, const uint8_t *masks, int N, int H, int W,
                   double fpr_limit, struct metric_pixel *out);

/* ---- per-class tables --------------------------------------------------- */

struct metric_row {
    char cls[64];
    double p_ap, pro, p_auroc, i_auroc;
    long n_images, n_defective;
};

/* One row per class in order of first appearance in the file, then the
 * "mean" row: the mean over classes of each metric, NaN rows left out (with a
 * warning naming the class and the metric). */
struct metric_table {
    int n_rows; /* classes + 1 */
    struct metric_row *rows;
    char method[64], setting[64], dataset[64];
    char source[1024]; /* the maps file */
    double fpr_limit;  /* the PRO integration limit used */
};

/* Compute the table of a maps file opened with maps_open() (images are loaded
 * one class at a time) or read with maps_read() (uses the loaded arrays). */
int metrics_compute(struct maps_file *m, double fpr_limit, struct metric_table *t);
void metric_table_free(struct metric_table *t);

/* CSV: header "class,p_ap,pro,p_auroc,i_auroc", one line per row, values as
 * %.17g (NaN written as "nan"). Written atomically. */
int metrics_write_csv(const struct metric_table *t, const char *path);

/* Markdown: the paper's order P-AP / PRO / P-AUROC / I-AUROC, percentages with
 * one decimal, one table per metric_table under a heading naming the method,
 * setting, dataset and source. Written atomically. */
int metrics_write_markdown(const struct metric_table *t, int n_tables, const char *path);

#endif
