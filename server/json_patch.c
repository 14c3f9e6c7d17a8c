/* json_patch.c — stub; being written. */
typedef int fig_json_patch_stub_t;
