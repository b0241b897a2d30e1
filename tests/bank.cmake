# Memory bank, kNN search, residuals and the HDF5 feature store: brute-force
# references from tests/ref_bank.py, and a writer killed half way.
snarm_py_fixture(NAME bank_ref SCRIPT ref_bank.py OUTPUT bank.h5)
snarm_c_test(NAME test_knn SOURCES test_knn.c testutil.c LABELS unit golden
             FIXTURES bank_ref TIMEOUT 60)
snarm_c_test(NAME test_coreset SOURCES test_coreset.c testutil.c LABELS unit golden
             FIXTURES bank_ref TIMEOUT 60)
snarm_c_test(NAME test_residual SOURCES test_residual.c testutil.c LABELS unit golden
             FIXTURES bank_ref TIMEOUT 60)
snarm_c_test(NAME test_store SOURCES test_store.c testutil.c LABELS unit TIMEOUT 60)
