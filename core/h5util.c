#include "h5util.h"

#include "common.h"

hid_t h5_dcpl_untimed(void)
{
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    if (p < 0 || H5Pset_obj_track_times(p, 0) < 0)
        sn_fatal("HDF5: cannot make a dataset-creation property list");
    return p;
}

hid_t h5_gcpl_untimed(void)
{
    hid_t p = H5Pcreate(H5P_GROUP_CREATE);
    if (p < 0 || H5Pset_obj_track_times(p, 0) < 0)
        sn_fatal("HDF5: cannot make a group-creation property list");
    return p;
}
