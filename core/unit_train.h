/*
 * unit_train.h - the SNARM decoder of one unit: training on synthetic
 * defects and prediction.
 *
 * Training samples are synthetic defects drawn on the unit's training
 * images (pipeline_extract_synth). Each sample's inter residual is taken
 * against the bank of its own class's good images: the unit's bank, except
 * in the cross-class setting, where the decoder learns on the other classes
 * and each of them gets a bank of its own training images.
 */
#ifndef SNARM_UNIT_TRAIN_H
#define SNARM_UNIT_TRAIN_H

#include <mpi.h>

struct pipeline;
struct sweep_unit;
struct unit_images;
struct bank;
struct unit_model;

/* Train (or resume from unit_dir/checkpoint.h5) and return the model. */
int unit_train(struct pipeline *p, const struct sweep_unit *u,
               const struct unit_images *im, const struct bank *bank,
               const char *unit_dir, MPI_Comm group, struct unit_model **out,
               long *n_samples);

/* The head maps (n_maps x crop x crop probabilities) for one image's
 * features f and inter residual R (M x d each). */
int unit_model_predict(struct unit_model *m, const float *f, const float *R, float *maps,
                       int *n_maps);
int unit_model_n_maps(const struct unit_model *m);
/* Where training resumed (0: from scratch) and the seconds of training steps
 * done before that, by the run that wrote the checkpoint. */
void unit_model_resumed(const struct unit_model *m, long *step, double *seconds);
void unit_model_free(struct unit_model *m);

#endif
