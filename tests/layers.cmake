# Decoder building blocks (kernels/layers*.c): finite-difference checks of
# every backward pass, and a golden comparison with PyTorch.
snarm_c_test(NAME test_layers SOURCES test_layers.c testutil.c LABELS unit TIMEOUT 120)
snarm_py_fixture(NAME layers_ref SCRIPT ref_layers.py OUTPUT layers.h5)
snarm_c_test(NAME test_layers_golden SOURCES test_layers_golden.c testutil.c
             LABELS golden FIXTURES layers_ref TIMEOUT 120)
