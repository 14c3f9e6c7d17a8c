/*
 * loadgen.c — a small HTTP/1.1 load generator for `make bench` (tests/bench/run_bench.py).
 *
 * Three modes, one output: a single JSON line on stdout with the counts and the
 * latency percentiles of the run.
 *   --rate R --duration S        open loop: request i is due at t0 + i/R. Its latency is
 *                                measured from that scheduled time, not from when it was
 *                                actually sent, so a server that stalls is charged for
 *                                the requests it delayed (no coordinated omission).
 *                                --connections N caps the requests in flight; a due
 *                                request waits for a free slot (and that wait counts).
 *   --concurrency C --duration S closed loop: C requests always in flight, each restarted
 *                                as soon as it completes; latency from the actual start.
 *   --hold N                     starts N requests at once, prints "holding" (flushed) once
 *                                every one has been sent, then waits for all of them. The
 *                                benchmark samples the server's memory at that point.
 *
 * Design:
 * - One thread, libcurl's multi_socket interface on epoll: a wake-up costs work only
 *   for the sockets that are ready. (curl_multi_poll() + curl_multi_perform() visit
 *   every transfer on every wake-up, one poll() system call each, which made the load
 *   generator cost as much CPU as a small server at a few hundred connections.) The
 *   open-loop schedule is a timerfd in the same epoll set, so a due request is sent
 *   within microseconds rather than on the next millisecond tick.
 * - A fixed pool of easy handles, configured once and re-added after each transfer, so
 *   the multi handle's connection cache keeps every connection alive (keep-alive) and a
 *   request costs no setup beyond curl's own state machine.
 * - Latencies are kept in one array of nanoseconds and sorted once at the end:
 *   percentiles are exact (nearest rank), not binned. Only successful responses (no
 *   transport error, the expected status) contribute latencies; failures are counted.
 * - The response body is discarded. Errors never stop the run.
 * - RLIMIT_NOFILE is raised to the hard limit so --hold can open thousands of sockets.
 * - No libm: the build links only libcurl and threads.
 * - Loopback benchmarking tool: it sends to whatever --url says, nothing else.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define MAX_HANDLES 100000      /* upper bound on --connections / --concurrency / --hold */
#define MAX_RATE 1000000.0      /* requests per second */
#define MAX_DURATION_S 3600.0
#define MAX_BODY_BYTES (64u << 20)
#define WAIT_CAP_MS 50          /* wake up at least this often to notice signals and deadlines */
#define MAX_EVENTS 256

typedef enum { MODE_NONE, MODE_RATE, MODE_CLOSED, MODE_HOLD } mode_t_;

typedef struct {
    CURL *easy;
    uint64_t start_ns; /* scheduled (open loop) or actual (closed loop, hold) start */
    int busy;
} slot_t;

static struct {
    /* options */
    mode_t_ mode;
    const char *url;
    const char *method;
    char *body;
    size_t body_len;
    struct curl_slist *headers;
    long expect_status;
    double rate, duration_s, timeout_s;
    long connections, concurrency, hold;
    int verbose;
    /* run state */
    CURLM *multi;
    int epfd;
    uint64_t curl_timer_ns; /* when curl wants CURL_SOCKET_TIMEOUT; 0: no timer */
    slot_t *slots;
    long nslots;
    long *free_slots; /* stack of idle slot indexes */
    long nfree;
    long inflight, max_inflight;
    uint64_t *lat_ns;
    size_t nlat, lat_cap;
    uint64_t requests, errors, bad_status, bytes, sent_hold;
    uint64_t started, unsent;
} L = {.method = "GET", .expect_status = 200, .timeout_s = 30.0};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void usage(void)
{
    fputs("usage: loadgen --url URL [--method GET|POST] [--body-file F] [--header 'K: V']... [--expect-status N]\n"
          "               (--rate R --duration S [--connections N] | --concurrency C --duration S | --hold N)\n"
          "               [--timeout S] [--verbose]\n"
          "Prints one JSON line: requests, errors, bad_status, duration_s, rps, p50_us, p90_us, p99_us,\n"
          "p999_us, max_us (and ok, bytes, unsent, max_inflight, mode).\n",
          stderr);
    exit(2);
}

/* Strict number parsing: the whole argument, within [lo, hi]. */
static double parse_num(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "loadgen: %s: expected a number from %g to %g, got '%s'\n", opt, lo, hi, s);
        exit(2);
    }
    return v;
}

static long parse_int(const char *opt, const char *s, long lo, long hi)
{
    double v = parse_num(opt, s, (double)lo, (double)hi);
    if (v != (double)(long)v) {
        fprintf(stderr, "loadgen: %s: expected a whole number, got '%s'\n", opt, s);
        exit(2);
    }
    return (long)v;
}

static void read_body(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("--body-file %s: cannot open", path);
    size_t cap = 65536, len = 0;
    char *b = malloc(cap);
    if (b == NULL)
        die("%s", "out of memory");
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_BODY_BYTES)
                die("--body-file %s: larger than 64 MB", path);
            cap *= 2;
            char *nb = realloc(b, cap);
            if (nb == NULL)
                die("%s", "out of memory");
            b = nb;
        }
        size_t n = fread(b + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    if (ferror(f))
        die("--body-file %s: read error", path);
    fclose(f);
    L.body = b;
    L.body_len = len;
}

static void parse_args(int argc, char **argv)
{
    int have_duration = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--verbose") == 0) {
            L.verbose = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--url") == 0) {
            if (strncmp(v, "http://", 7) != 0)
                die("--url %s: only http:// URLs", v);
            L.url = v;
        } else if (strcmp(a, "--method") == 0) {
            if (strcmp(v, "GET") != 0 && strcmp(v, "POST") != 0)
                die("--method %s: expected GET or POST", v);
            L.method = v;
        } else if (strcmp(a, "--body-file") == 0) {
            read_body(v);
        } else if (strcmp(a, "--header") == 0) {
            const char *colon = strchr(v, ':');
            if (colon == NULL || colon == v || strpbrk(v, "\r\n") != NULL)
                die("--header '%s': expected 'Name: value'", v);
            struct curl_slist *h = curl_slist_append(L.headers, v);
            if (h == NULL)
                die("%s", "out of memory");
            L.headers = h;
        } else if (strcmp(a, "--expect-status") == 0) {
            L.expect_status = parse_int(a, v, 100, 599);
        } else if (strcmp(a, "--rate") == 0) {
            L.rate = parse_num(a, v, 0.001, MAX_RATE);
            L.mode = L.mode == MODE_NONE || L.mode == MODE_RATE ? MODE_RATE : (usage(), MODE_NONE);
        } else if (strcmp(a, "--duration") == 0) {
            L.duration_s = parse_num(a, v, 0.001, MAX_DURATION_S);
            have_duration = 1;
        } else if (strcmp(a, "--connections") == 0) {
            L.connections = parse_int(a, v, 1, MAX_HANDLES);
        } else if (strcmp(a, "--concurrency") == 0) {
            L.concurrency = parse_int(a, v, 1, MAX_HANDLES);
            L.mode = L.mode == MODE_NONE || L.mode == MODE_CLOSED ? MODE_CLOSED : (usage(), MODE_NONE);
        } else if (strcmp(a, "--hold") == 0) {
            L.hold = parse_int(a, v, 1, MAX_HANDLES);
            L.mode = L.mode == MODE_NONE || L.mode == MODE_HOLD ? MODE_HOLD : (usage(), MODE_NONE);
        } else if (strcmp(a, "--timeout") == 0) {
            L.timeout_s = parse_num(a, v, 0.001, MAX_DURATION_S);
        } else {
            fprintf(stderr, "loadgen: unknown option '%s'\n", a);
            usage();
        }
    }
    if (L.url == NULL || L.mode == MODE_NONE)
        usage();
    if ((L.mode == MODE_RATE || L.mode == MODE_CLOSED) && !have_duration)
        die("%s", "--rate and --concurrency need --duration");
    if (L.mode == MODE_HOLD && have_duration)
        die("%s", "--hold takes no --duration (it waits for every request, up to --timeout)");
    if (L.connections > 0 && L.mode != MODE_RATE)
        die("%s", "--connections goes with --rate");
    if (L.body != NULL && strcmp(L.method, "POST") != 0)
        die("%s", "--body-file needs --method POST");
    if (L.mode == MODE_RATE && L.connections == 0)
        L.connections = 1000; /* enough for any server within a second of latency at 1k/s */
    if (L.mode == MODE_RATE && L.rate * L.duration_s > 50e6)
        die("%s", "--rate x --duration: at most 50 million requests");
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    L.bytes += size * nmemb;
    return size * nmemb;
}

/* Called once the connection is ready and just before the request goes out. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port, int conn_local_port)
{
    (void)ud;
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    L.sent_hold++;
    return CURL_PREREQFUNC_OK;
}

static CURL *easy_new(long idx)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        die("%s", "curl_easy_init failed");
    curl_easy_setopt(e, CURLOPT_URL, L.url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)(intptr_t)idx);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "figment-loadgen/1");
    if (L.headers != NULL)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, L.headers);
    if (strcmp(L.method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, L.body != NULL ? L.body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)L.body_len);
    }
    if (L.mode == MODE_HOLD) {
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        /* the whole batch connects at once: give the listen queue time to drain */
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    }
    return e;
}

/* CURLMOPT_SOCKETFUNCTION: mirror curl's interest in a socket into the epoll set. The
 * socket's "assigned" pointer records whether it is in the set already. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp)
{
    (void)e;
    (void)ud;
    if (what == CURL_POLL_REMOVE) {
        /* curl forgets the socket's assignment itself; the fd may be closed already */
        if (sockp != NULL)
            epoll_ctl(L.epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.fd = fd;
    if (epoll_ctl(L.epfd, sockp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
        /* curl reuses a number the kernel recycled: retry the other way round */
        if (epoll_ctl(L.epfd, sockp != NULL ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0) {
            perror("loadgen: epoll_ctl");
            return -1;
        }
    }
    if (sockp == NULL)
        curl_multi_assign(L.multi, fd, (void *)1);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: remember when curl wants to be called for timeouts. */
static int on_curl_timer(CURLM *m, long timeout_ms, void *ud)
{
    (void)m;
    (void)ud;
    L.curl_timer_ns = timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000u;
    if (timeout_ms == 0)
        L.curl_timer_ns = 1; /* "as soon as possible" */
    return 0;
}

static void socket_action(curl_socket_t fd, int mask)
{
    int running;
    CURLMcode mc = curl_multi_socket_action(L.multi, fd, mask, &running);
    if (mc != CURLM_OK) {
        fprintf(stderr, "loadgen: curl_multi_socket_action: %s\n", curl_multi_strerror(mc));
        exit(2);
    }
}

static void slot_start(long idx, uint64_t start_ns)
{
    slot_t *s = &L.slots[idx];
    s->start_ns = start_ns;
    s->busy = 1;
    CURLMcode mc = curl_multi_add_handle(L.multi, s->easy);
    if (mc != CURLM_OK) {
        fprintf(stderr, "loadgen: curl_multi_add_handle: %s\n", curl_multi_strerror(mc));
        exit(2);
    }
    L.started++;
    if (++L.inflight > L.max_inflight)
        L.max_inflight = L.inflight;
}

static void lat_push(uint64_t ns)
{
    if (L.nlat == L.lat_cap) {
        L.lat_cap = L.lat_cap ? L.lat_cap * 2 : 65536;
        uint64_t *n = realloc(L.lat_ns, L.lat_cap * sizeof(*n));
        if (n == NULL)
            die("%s", "out of memory");
        L.lat_ns = n;
    }
    L.lat_ns[L.nlat++] = ns;
}

/* Collects finished transfers; returns how many slots were freed. */
static long harvest(void)
{
    long n = 0;
    int left;
    CURLMsg *m;
    uint64_t t = 0;
    while ((m = curl_multi_info_read(L.multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        if (t == 0)
            t = now_ns();
        void *p = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p);
        long idx = (long)(intptr_t)p;
        slot_t *s = &L.slots[idx];
        CURLcode rc = m->data.result;
        L.requests++;
        if (rc != CURLE_OK) {
            if (L.verbose && L.errors < 5)
                fprintf(stderr, "loadgen: transfer error: %s\n", curl_easy_strerror(rc));
            L.errors++;
        } else {
            long status = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (status != L.expect_status) {
                if (L.verbose && L.bad_status < 5)
                    fprintf(stderr, "loadgen: status %ld\n", status);
                L.bad_status++;
            } else {
                lat_push(t > s->start_ns ? t - s->start_ns : 0);
            }
        }
        curl_multi_remove_handle(L.multi, m->easy_handle);
        s->busy = 0;
        L.free_slots[L.nfree++] = idx;
        L.inflight--;
        n++;
    }
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile in microseconds; 0 without samples. */
static double pct_us(double q)
{
    if (L.nlat == 0)
        return 0;
    double r = q * (double)L.nlat;
    size_t rank = (size_t)r;
    if ((double)rank < r)
        rank++; /* ceil, without libm */
    if (rank < 1)
        rank = 1;
    if (rank > L.nlat)
        rank = L.nlat;
    return (double)L.lat_ns[rank - 1] / 1000.0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("loadgen: setrlimit(RLIMIT_NOFILE)");
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && L.nslots + 64 > (long)rl.rlim_cur)
        fprintf(stderr, "loadgen: warning: %ld connections but only %ld file descriptors\n", L.nslots,
                (long)rl.rlim_cur);
}

static void timer_arm(int tfd, uint64_t at_ns)
{
    struct itimerspec its = {{0, 0}, {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)}};
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    L.nslots = L.mode == MODE_RATE ? L.connections : L.mode == MODE_CLOSED ? L.concurrency : L.hold;
    raise_nofile();

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("%s", "curl_global_init failed");
    L.multi = curl_multi_init();
    if (L.multi == NULL)
        die("%s", "curl_multi_init failed");
    /* keep every connection of the pool alive between requests */
    curl_multi_setopt(L.multi, CURLMOPT_MAXCONNECTS, L.nslots + 16);
    L.slots = calloc((size_t)L.nslots, sizeof(*L.slots));
    L.free_slots = calloc((size_t)L.nslots, sizeof(*L.free_slots));
    if (L.slots == NULL || L.free_slots == NULL)
        die("%s", "out of memory");
    for (long i = L.nslots - 1; i >= 0; i--) {
        L.slots[i].easy = easy_new(i);
        L.free_slots[L.nfree++] = i;
    }
    if (L.mode == MODE_RATE) {
        L.lat_cap = (size_t)(L.rate * L.duration_s) + 1;
        L.lat_ns = malloc(L.lat_cap * sizeof(*L.lat_ns));
        if (L.lat_ns == NULL)
            die("%s", "out of memory");
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    L.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (tfd < 0 || L.epfd < 0)
        die("%s", "timerfd_create/epoll_create1 failed");
    struct epoll_event tev = {.events = EPOLLIN, .data.fd = tfd};
    if (epoll_ctl(L.epfd, EPOLL_CTL_ADD, tfd, &tev) != 0)
        die("%s", "epoll_ctl(timerfd) failed");
    curl_multi_setopt(L.multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(L.multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    struct epoll_event evs[MAX_EVENTS];
    uint64_t armed_ns = 0; /* what the timerfd is set to */

    const uint64_t t0 = now_ns();
    const uint64_t end_ns = t0 + (uint64_t)(L.duration_s * 1e9);
    const uint64_t total = L.mode == MODE_RATE ? (uint64_t)(L.rate * L.duration_s + 0.5) : 0;
    const double interval_ns = L.mode == MODE_RATE ? 1e9 / L.rate : 0;
    uint64_t next = 0; /* open loop: index of the next scheduled request */
    uint64_t deadline = 0; /* when to give up on transfers still in flight */
    int printed_holding = 0, timed_out = 0;

    if (L.mode == MODE_HOLD) {
        uint64_t t = now_ns();
        while (L.nfree > 0)
            slot_start(L.free_slots[--L.nfree], t);
        deadline = t + (uint64_t)(L.timeout_s * 1e9);
    }

    for (;;) {
        uint64_t now = now_ns();
        /* start whatever is due */
        if (L.mode == MODE_RATE) {
            while (next < total && L.nfree > 0) {
                uint64_t due = t0 + (uint64_t)((double)next * interval_ns);
                if (due > now)
                    break;
                slot_start(L.free_slots[--L.nfree], due);
                next++;
            }
            if (next >= total && deadline == 0)
                deadline = (now > end_ns ? now : end_ns) + (uint64_t)(L.timeout_s * 1e9);
        } else if (L.mode == MODE_CLOSED) {
            if (now < end_ns) {
                while (L.nfree > 0)
                    slot_start(L.free_slots[--L.nfree], now);
            } else if (deadline == 0) {
                deadline = now + (uint64_t)(L.timeout_s * 1e9);
            }
        }

        if (L.curl_timer_ns != 0 && L.curl_timer_ns <= now_ns()) {
            L.curl_timer_ns = 0;
            socket_action(CURL_SOCKET_TIMEOUT, 0);
        }
        long freed = harvest();

        if (L.mode == MODE_HOLD && !printed_holding && L.sent_hold >= (uint64_t)L.hold) {
            fputs("holding\n", stdout);
            fflush(stdout);
            printed_holding = 1;
        }

        int drained = L.inflight == 0 &&
                      (L.mode == MODE_HOLD || (L.mode == MODE_RATE && next >= total) ||
                       (L.mode == MODE_CLOSED && now_ns() >= end_ns));
        if (drained || stop_signal)
            break;
        if (deadline != 0 && now_ns() >= deadline) {
            timed_out = 1;
            break;
        }
        if (freed > 0 && (L.mode == MODE_CLOSED || (L.mode == MODE_RATE && next < total)))
            continue; /* a slot came free: use it before sleeping */

        if (L.mode == MODE_RATE && next < total && L.nfree > 0) {
            uint64_t due = t0 + (uint64_t)((double)next * interval_ns);
            if (due != armed_ns) {
                timer_arm(tfd, due);
                armed_ns = due;
            }
        }
        int timeout_ms = WAIT_CAP_MS;
        if (L.curl_timer_ns != 0) {
            uint64_t t = now_ns();
            uint64_t ms = L.curl_timer_ns <= t ? 0 : (L.curl_timer_ns - t + 999999) / 1000000;
            if (ms < (uint64_t)timeout_ms)
                timeout_ms = (int)ms;
        }
        int n = epoll_wait(L.epfd, evs, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            exit(2);
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == tfd) {
                uint64_t expirations;
                ssize_t r = read(tfd, &expirations, sizeof(expirations));
                (void)r;
                armed_ns = 0;
                continue;
            }
            int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                       (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                       (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            socket_action(fd, mask);
        }
    }
    uint64_t t_end = now_ns();
    if (L.mode == MODE_RATE)
        L.unsent = total - next;
    uint64_t unfinished = (uint64_t)L.inflight;

    if (L.nlat > 1)
        qsort(L.lat_ns, L.nlat, sizeof(*L.lat_ns), cmp_u64);
    double dur = (double)(t_end - t0) / 1e9;
    printf("{\"mode\":\"%s\",\"requests\":%" PRIu64 ",\"ok\":%zu,\"errors\":%" PRIu64 ",\"bad_status\":%" PRIu64
           ",\"unfinished\":%" PRIu64 ",\"unsent\":%" PRIu64 ",\"timed_out\":%s,\"interrupted\":%s,\"duration_s\":%.3f"
           ",\"rps\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f"
           ",\"max_inflight\":%ld,\"bytes\":%" PRIu64 "}\n",
           L.mode == MODE_RATE ? "rate" : L.mode == MODE_CLOSED ? "closed" : "hold", L.requests, L.nlat, L.errors,
           L.bad_status, unfinished, L.unsent, timed_out ? "true" : "false", stop_signal ? "true" : "false", dur,
           dur > 0 ? (double)L.requests / dur : 0.0, pct_us(0.50), pct_us(0.90), pct_us(0.99), pct_us(0.999),
           L.nlat ? (double)L.lat_ns[L.nlat - 1] / 1000.0 : 0.0, L.max_inflight, L.bytes);
    fflush(stdout);

    for (long i = 0; i < L.nslots; i++) {
        if (L.slots[i].busy)
            curl_multi_remove_handle(L.multi, L.slots[i].easy);
        curl_easy_cleanup(L.slots[i].easy);
    }
    curl_multi_cleanup(L.multi);
    curl_slist_free_all(L.headers);
    curl_global_cleanup();
    close(tfd);
    close(L.epfd);
    free(L.slots);
    free(L.free_slots);
    free(L.lat_ns);
    free(L.body);
    return 0;
}
