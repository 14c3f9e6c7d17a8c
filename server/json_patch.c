/*
 * json_patch.c — JSON Merge Patch, RFC 7396, section 2, as written:
 *
 *   MergePatch(Target, Patch):
 *     if Patch is an Object:
 *       if Target is not an Object: Target = {}
 *       for each Name/Value pair in Patch:
 *         if Value is null: remove Name from Target (if present)
 *         else: Target[Name] = MergePatch(Target[Name], Value)
 *       return Target
 *     else: return Patch
 *
 * Design: the result never shares a node with either input (deep copies), so
 * callers may mutate the result, the target or the patch afterwards without
 * aliasing surprises; session states are small, so the copies are cheap. Recursion
 * depth is bounded by the patch's nesting, which jansson's parser already caps.
 */
#include "json_patch.h"

json_t *json_merge_patch(const json_t *target, const json_t *patch)
{
    if (patch == NULL)
        return target ? json_deep_copy(target) : json_null();
    if (!json_is_object(patch))
        return json_deep_copy(patch);

    json_t *result = json_is_object(target) ? json_deep_copy(target) : json_object();
    if (result == NULL)
        return NULL;

    const char *name;
    json_t *value;
    /* json_object_foreach wants a non-const object; we only read it. */
    json_object_foreach((json_t *)patch, name, value) {
        if (json_is_null(value)) {
            json_object_del(result, name);
            continue;
        }
        json_t *merged = json_merge_patch(json_object_get(result, name), value);
        if (merged == NULL || json_object_set_new(result, name, merged) != 0) {
            json_decref(result);
            return NULL;
        }
    }
    return result;
}
