# The CUDA path (kernels/cuda/): parity tests of every device kernel against
# its CPU twin, label cuda. Built only in CUDA builds; each test exits 77
# (skipped) on a machine without a usable GPU. tests/gpu_check.sh runs them
# and the timings on a GPU machine.
if(SNARM_HAVE_CUDA AND TARGET snarm_cuda)
  foreach(area ops knn scan layers)
    snarm_c_test(NAME test_cuda_${area} SOURCES test_cuda_${area}.c testutil.c
                 LABELS cuda TIMEOUT 300)
  endforeach()

  # NCCL all-reduce: one rank (a singleton MPI process), and two ranks where
  # two GPUs are visible (the test skips itself otherwise).
  snarm_c_test(NAME test_cuda_nccl SOURCES test_cuda_nccl.c testutil.c
               LABELS cuda TIMEOUT 120)
  add_test(NAME test_cuda_nccl_2ranks
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -n 2
                   $<TARGET_FILE:test_cuda_nccl>)
  set_tests_properties(test_cuda_nccl_2ranks PROPERTIES LABELS cuda TIMEOUT 120
      SKIP_RETURN_CODE 77 ENVIRONMENT "OMP_NUM_THREADS=1")

  # Device timings at the method's sizes (not a test; tests/gpu_check.sh).
  add_executable(cuda_timing cuda_timing.c)
  target_compile_options(cuda_timing PRIVATE ${SNARM_WARN})
  target_link_libraries(cuda_timing PRIVATE snarm_lib)
endif()
