/*
 * fsutil.h — the few file-system chores several modules share: reading a whole file
 * with a size bound, and creating a directory path.
 *
 * Ownership: fs_read_file() returns a malloc'd, NUL-terminated buffer the caller frees.
 */
#ifndef FIG_FSUTIL_H
#define FIG_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Reads a regular file of at most max bytes. NULL with err (code `code`, message
 * "<path>: <why>") on failure; *missing (may be NULL) is set when it does not exist. */
char *fs_read_file(const char *path, size_t max, size_t *len_out, int *missing, fig_code_t code, fig_err_t *err);

/* mkdir -p: creates dir and its missing parents with mode (existing ones are kept). */
int fs_mkdir_p(const char *dir, mode_t mode, fig_err_t *err);
/* Creates the directory that will hold path (its dirname), like fs_mkdir_p. */
int fs_mkdir_parent(const char *path, mode_t mode, fig_err_t *err);

#endif
