/*
 * uploads.h — files a user uploads to an app, kept per session under
 * var/uploads/<app>/<session_id>/ and described to the model in the interaction text.
 *
 * Every function blocks on the file system: call them from a worker thread, never
 * from an event loop.
 *
 * Ownership: uploads_dir() and uploads_sanitize_name() return malloc'd strings,
 * uploads_list() a new jansson reference; the caller frees them.
 */
#ifndef FIG_UPLOADS_H
#define FIG_UPLOADS_H

#include <jansson.h>
#include <stddef.h>

#include "app.h"
#include "error.h"

#define UPLOADS_MAX_NAME 80        /* bytes of a stored file name */
#define UPLOADS_SNIFF_BYTES 4096   /* bytes read to tell text from binary */
#define UPLOADS_FIRST_LINES 5      /* lines of a text file shown to the model */
#define UPLOADS_FIRST_BYTES 500    /* bytes of those lines, at most */
#define UPLOADS_LIST_MAX 1000      /* files described by uploads_list(), the first by name */

/* "<var_dir>/uploads/<app_name>/<session_id>". NULL when app_name is not an app name
 * ([a-z0-9][a-z0-9_-]{0,31}) or session_id is not [A-Za-z0-9_-]{1,64}: neither may
 * ever name another directory. */
char *uploads_dir(const char *var_dir, const char *app_name, const char *session_id);

/* The name a client's file name is stored under: the part after the last '/' or '\\',
 * every byte outside [A-Za-z0-9._-] replaced by '_', leading dots replaced by '_',
 * cut to UPLOADS_MAX_NAME bytes; "upload" when nothing is left. Never NULL or empty,
 * and always a fixed point (sanitizing the result gives it back). */
char *uploads_sanitize_name(const char *name, size_t len);

/* Stores data[0..len) as the sanitized `filename` in dir (created 0700 with its
 * parents; the file is 0600). A file of that name is replaced. Atomic: written under
 * a temporary name, then renamed; nothing in the directory is followed as a symlink.
 * Refuses (FIG_E_TOO_LARGE, a message for a 413 page naming the limit) when uploads
 * are off for the app (max_upload_bytes 0), when len exceeds app->max_upload_bytes,
 * or when the session already keeps app->max_uploads files and this one is new.
 * *stored_name (may be NULL) receives the sanitized name. */
int uploads_store(const char *dir, const app_t *app, const char *filename, const char *data, size_t len,
                  char **stored_name, fig_err_t *err);

/* The session's files for the prompt, sorted by name (byte order): a JSON array of
 *   {"name": "a.csv", "size": 12, "type": "text", "mime": "text/csv", "first_lines": "a,b\n1,2"}
 * "type" is "text" when the first UPLOADS_SNIFF_BYTES are valid UTF-8 without NUL
 * bytes, else "binary"; "mime" is guessed from the extension (text/plain or
 * application/octet-stream when unknown); "first_lines" (text files only) is the
 * first UPLOADS_FIRST_LINES lines without a UTF-8 BOM, CRLF and CR turned into LF,
 * joined by "\n", at most UPLOADS_FIRST_BYTES bytes (never splitting a character).
 * Only regular files whose names are fixed points of uploads_sanitize_name() are
 * listed (no symlinks, no temporary files). A missing dir is an empty array. */
json_t *uploads_list(const char *dir, fig_err_t *err);

/* Removes dir and everything in it (symlinks are removed, never followed). A missing
 * dir is not an error. */
int uploads_delete(const char *dir, fig_err_t *err);

#endif
