/*
 * json_patch.h — JSON Merge Patch (RFC 7396), used by the set_state tool.
 */
#ifndef FIG_JSON_PATCH_H
#define FIG_JSON_PATCH_H

#include <jansson.h>

/* Applies patch to target and returns the result (a new reference; the caller
 * decrefs). target is not modified; either argument may be any JSON value.
 * Per RFC 7396, a non-object patch replaces the target and null members delete. */
json_t *json_merge_patch(const json_t *target, const json_t *patch);

#endif
