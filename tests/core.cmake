# Core utilities: configuration, logging, RNG, allocation, the CLI.
snarm_c_test(NAME test_config SOURCES test_config.c testutil.c LABELS unit)
snarm_c_test(NAME test_common SOURCES test_common.c testutil.c LABELS unit)
snarm_sh_test(NAME test_cli SCRIPT test_cli.sh LABELS unit)
snarm_sh_test(NAME test_report SCRIPT test_report.sh LABELS unit)
snarm_c_test(NAME test_unit SOURCES test_unit.c testutil.c LABELS unit TIMEOUT 900)
snarm_c_test(NAME test_learn SOURCES test_learn.c testutil.c LABELS unit TIMEOUT 900)
