/*
 * session_writer.h — write-behind for session saves: an interaction's page goes out as
 * soon as its session record is in the journal; one thread commits the records to the
 * session store (var/figment.db) in batches.
 *
 * Why: committing each save to SQLite on a worker before answering put a thread hop
 * there and back and a SQLite commit (and, now and then, a WAL checkpoint with its
 * fdatasync) on the path of every interaction: about 0.2 ms at the median and several
 * ms at the tail on the reference machine, more than everything else figment does.
 *
 * Durability: session_writer_submit() appends the record to the journal,
 * var/journal/sessions-<generation>.log, with one write() before it returns; the caller
 * answers only after that. The bytes are in the kernel then, so they survive a crash of
 * figment (not a crash of the machine: the same promise as the store's WAL with
 * synchronous=NORMAL). At start, session_writer_start() replays what the store has not
 * applied yet. The store keeps how far it has applied the journal (generation, byte
 * offset) and the writer updates that mark in the same transaction as the records, so
 * a replay applies each record exactly once.
 *
 * Order: one mutex covers the append and the queueing, so records are committed in the
 * order of the journal, and a session's later save always wins over an earlier one.
 *
 * Reads: until the writer has committed a save, the newest state of that session is only
 * in memory. The caller pins it in the session cache first (session_cache_put_pinned);
 * the writer unpins it after its commit, and pinned entries are never evicted, so
 * nobody reads an older state from SQLite in between.
 *
 * What the journal leaves out: the page kept for the stale fallback (session_record_t's
 * page_html) is committed with the record but not journaled, so a crash loses the pages
 * of the saves not committed yet (the fallback then shows an older page, or none).
 *
 * Journal format: one record per line, a JSON object (see session_writer.c). A line cut
 * short by a crash at the end of the newest file is ignored. Files rotate at
 * `rotate_bytes`; a file is deleted once everything in it is committed.
 *
 * Threads: submit and flush from any thread; start and stop from the main thread.
 */
#ifndef FIG_SESSION_WRITER_H
#define FIG_SESSION_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "session.h"
#include "session_cache.h"

typedef struct session_writer session_writer_t;

typedef struct {
    const char *journal_dir;  /* created if missing (0700) */
    const char *db_path;      /* the session store */
    session_cache_t *cache;   /* unpinned after each commit; may be NULL */
    size_t rotate_bytes;      /* 0: 8 MB */
    size_t max_pending;       /* records queued at most before submit refuses; 0: 100,000 */
    int commit_delay_ms;      /* tests only: wait this long before each commit (0: none) */
} session_writer_opts_t;

typedef struct {
    uint64_t submitted;  /* records journaled and queued */
    uint64_t committed;  /* records committed to the store */
    uint64_t replayed;   /* records applied from the journal at start */
    uint64_t failures;   /* commits that failed (the records stay queued and are retried) */
    uint64_t batches;    /* commits */
    size_t pending;      /* queued, not yet committed */
} session_writer_stats_t;

/* Locks the journal directory (flock: a second figment on the same var dir is refused
 * with FIG_E_CONFIG), opens the store, replays the journal into it (a torn last line is skipped with a
 * warning on stderr), deletes the replayed files, opens a new journal generation and
 * starts the writer thread. NULL with err when the store or the journal cannot be used. */
session_writer_t *session_writer_start(const session_writer_opts_t *opts, fig_err_t *err);

/* Journals r and queues it for the store. Takes ownership of r's strings in every case
 * (r is cleared). 0, or -1 with err when the record could not be journaled (disk full,
 * too many records pending): then nothing was written and the caller must not answer as
 * if it had been saved. */
int session_writer_submit(session_writer_t *w, session_record_t *r, fig_err_t *err);

/* Blocks until every record submitted before the call is committed (or the writer is
 * failing: then returns -1 after timeout_ms). */
int session_writer_flush(session_writer_t *w, int timeout_ms);

void session_writer_stats(session_writer_t *w, session_writer_stats_t *out);

/* Commits what is queued, stops the thread, removes the fully applied journal and frees
 * w. NULL is fine. */
void session_writer_stop(session_writer_t *w);

/* The journal line for r (a JSON object and '\n'), and back. Exposed for tests. */
int session_record_encode(const session_record_t *r, fig_buf_t *out, fig_err_t *err);
int session_record_decode(const char *line, size_t len, session_record_t *r, fig_err_t *err);

#endif
