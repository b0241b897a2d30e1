# Sweeps, scheduling, gradient all-reduce, run folders and Slurm (dist/).
snarm_c_test(NAME test_dist_sweep SOURCES test_dist_sweep.c test_dist_fake.c testutil.c
             LABELS unit)
snarm_c_test(NAME test_dist_runstate SOURCES test_dist_runstate.c test_dist_fake.c
             testutil.c LABELS unit)
snarm_c_test(NAME test_dist_experiments SOURCES test_dist_experiments.c test_dist_fake.c
             testutil.c LABELS unit)

# MPI tests start their own ranks: more ranks than the CI's two cores, as root.
set(SNARM_MPIRUN ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe)

add_executable(test_dist_comm test_dist_comm.c test_dist_fake.c testutil.c)
target_compile_options(test_dist_comm PRIVATE ${SNARM_WARN})
target_include_directories(test_dist_comm PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(test_dist_comm PRIVATE snarm_lib)
add_test(NAME test_dist_comm COMMAND ${SNARM_MPIRUN} -n 3 $<TARGET_FILE:test_dist_comm>)
set_tests_properties(test_dist_comm PROPERTIES LABELS mpi TIMEOUT 120
    SKIP_RETURN_CODE 77 ENVIRONMENT "OMP_NUM_THREADS=1")

# The built-in demo data, written once for the sweep tests.
set(SNARM_DIST_DEMO ${CMAKE_CURRENT_BINARY_DIR}/dist-demo)
add_test(NAME dist_demo_data COMMAND $<TARGET_FILE:snarm> demo-data ${SNARM_DIST_DEMO})
set_tests_properties(dist_demo_data PROPERTIES FIXTURES_SETUP dist_demo
    LABELS "mpi;slurm" TIMEOUT 300)

# End to end through `snarm run --stage-mock` (the unit stand-in: the test
# hook to swap for the real pipeline is the STAGE variable in the scripts).
foreach(t run fault)
  snarm_sh_test(NAME test_dist_${t} SCRIPT test_dist_${t}.sh LABELS mpi TIMEOUT 300
                ARGS ${SNARM_DIST_DEMO} ${MPIEXEC_EXECUTABLE})
  set_tests_properties(test_dist_${t} PROPERTIES FIXTURES_REQUIRED dist_demo)
endforeach()

# A real local Slurm cluster (skips where Slurm is not installed).
snarm_sh_test(NAME test_dist_slurm SCRIPT test_dist_slurm.sh LABELS slurm TIMEOUT 300
              ARGS ${SNARM_DIST_DEMO})
set_tests_properties(test_dist_slurm PROPERTIES FIXTURES_REQUIRED dist_demo
    RUN_SERIAL TRUE)

# The same guarantees with the real pipeline at toy sizes.
snarm_sh_test(NAME test_pipeline_mpi SCRIPT test_pipeline_mpi.sh LABELS mpi TIMEOUT 1200
              ARGS ${SNARM_DIST_DEMO} ${MPIEXEC_EXECUTABLE})
set_tests_properties(test_pipeline_mpi PROPERTIES FIXTURES_REQUIRED dist_demo)
