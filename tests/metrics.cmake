# Metrics, maps files and post-processing.
snarm_c_test(NAME test_metrics SOURCES test_metrics.c testutil.c LABELS unit TIMEOUT 60)
snarm_c_test(NAME test_metrics_io SOURCES test_metrics_io.c testutil.c LABELS unit
             TIMEOUT 60)
snarm_py_fixture(NAME metrics_ref SCRIPT ref_metrics.py OUTPUT metrics.h5)
snarm_c_test(NAME test_metrics_golden SOURCES test_metrics_golden.c testutil.c
             LABELS golden FIXTURES metrics_ref TIMEOUT 60)
