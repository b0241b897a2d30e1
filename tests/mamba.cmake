# The Mamba mixer: golden tests against the PyTorch reference (tests/ref_mamba.py)
# and finite-difference, variable-length and determinism unit tests.
snarm_py_fixture(NAME mamba_ref SCRIPT ref_mamba.py OUTPUT mamba.h5)
snarm_c_test(NAME test_mamba_golden SOURCES test_mamba.c testutil.c
             ARGS golden LABELS golden FIXTURES mamba_ref TIMEOUT 120)
snarm_c_test(NAME test_mamba_unit SOURCES test_mamba.c testutil.c
             ARGS unit LABELS unit TIMEOUT 120)
