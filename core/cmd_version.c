#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>
#include <hdf5.h>
#include <mpi.h>
#include <yaml.h>

#include "cli.h"

int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: snarm version\n\nPrint the version, the libraries it was built "
               "with and whether the CUDA path is built.\n");
        return CLI_OK;
    }
    if (argc > 1) return cli_usage("version", "takes no arguments");

    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    char *nl = strchr(mpi, '\n');
    if (nl) *nl = 0;
    char *comma = strchr(mpi, ',');
    if (comma) *comma = 0;

    printf("snarm %s\n", sn_version());
    printf("  blas    %s\n", openblas_get_config());
    printf("  hdf5    %u.%u.%u\n", maj, min, rel);
    printf("  mpi     %s\n", mpi);
    printf("  yaml    %s\n", yaml_get_version_string());
#ifdef SNARM_HAVE_CUDA
    printf("  cuda    built (cuBLAS, NCCL)\n");
#else
    printf("  cuda    not built\n");
#endif
    return CLI_OK;
}
