# The SNARM decoder and its training (core/decoder*.c, core/train.c): golden
# tests against the PyTorch model tests/ref_decoder.py, finite-difference
# checks of the whole backward pass, sharded (two-rank) gradients, a learning
# smoke test and the bit-exact resume test.
snarm_py_fixture(NAME decoder_ref SCRIPT ref_decoder.py OUTPUT decoder.h5)
snarm_c_test(NAME test_decoder_golden SOURCES test_decoder_golden.c testutil.c
             LABELS golden FIXTURES decoder_ref TIMEOUT 120)
snarm_c_test(NAME test_decoder_fd SOURCES test_decoder_fd.c testutil.c
             LABELS unit TIMEOUT 120)
snarm_c_test(NAME test_train SOURCES test_train.c testutil.c LABELS unit TIMEOUT 120)
