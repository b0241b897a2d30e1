# Backbones and fused patch features: ViT (DINOv2, timm), ResNet, safetensors.
snarm_py_fixture(NAME backbone_ref SCRIPT ref_backbone.py OUTPUT backbone.h5)
snarm_c_test(NAME test_backbone_golden SOURCES test_backbone_golden.c testutil.c
             LABELS golden FIXTURES backbone_ref TIMEOUT 120)
snarm_sh_test(NAME test_backbone_classify SCRIPT test_backbone_classify.sh LABELS data
              TIMEOUT 300)
snarm_c_test(NAME test_backbone_unit SOURCES test_backbone_unit.c testutil.c
             LABELS unit TIMEOUT 60)
snarm_c_test(NAME test_backbone_data SOURCES test_backbone_data.c testutil.c
             LABELS data TIMEOUT 120)
