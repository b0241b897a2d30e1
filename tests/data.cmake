# Images, datasets, the built-in demo data and synthetic defects (data/).
snarm_c_test(NAME test_image SOURCES test_image.c testutil.c LABELS unit TIMEOUT 60)
snarm_py_fixture(NAME image_ref SCRIPT ref_image.py OUTPUT image.h5)
snarm_c_test(NAME test_image_golden SOURCES test_image_golden.c testutil.c
             LABELS golden FIXTURES image_ref TIMEOUT 60)
snarm_c_test(NAME test_dataset SOURCES test_dataset.c testutil.c LABELS unit TIMEOUT 60)
snarm_c_test(NAME test_dataset_shared SOURCES test_dataset_shared.c testutil.c LABELS data
             TIMEOUT 120)
snarm_c_test(NAME test_demo SOURCES test_demo.c testutil.c LABELS unit TIMEOUT 120)
snarm_c_test(NAME test_synth SOURCES test_synth.c testutil.c LABELS unit TIMEOUT 120)
