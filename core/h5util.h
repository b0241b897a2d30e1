/*
 * h5util.h - small HDF5 helpers shared by every writer.
 *
 * HDF5 stamps each object with its creation and modification times unless
 * told not to. Runs must be byte-identical whatever the clock says (a
 * resumed or re-sharded sweep is checked file by file), so every dataset and
 * group snarm creates is made with the time stamps switched off.
 */
#ifndef SNARM_H5UTIL_H
#define SNARM_H5UTIL_H

#include <hdf5.h>

/* A dataset-creation property list without time stamps (H5Pclose it). */
hid_t h5_dcpl_untimed(void);
/* A group-creation property list without time stamps (H5Pclose it). */
hid_t h5_gcpl_untimed(void);

#endif
