/*
 * fsutil.c — bounded whole-file reads and mkdir -p (see fsutil.h).
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

char *fs_read_file(const char *path, size_t max, size_t *len_out, int *missing, fig_code_t code, fig_err_t *err)
{
    if (missing)
        *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (missing && errno == ENOENT)
            *missing = 1;
        fig_err_set(err, code, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fig_err_set(err, code, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((unsigned long long)st.st_size > max) {
        fig_err_set(err, code, "%s: larger than %zu bytes", path, max);
        close(fd);
        return NULL;
    }
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_reserve(&b, (size_t)st.st_size);
    for (;;) {
        fig_buf_reserve(&b, 4096);
        ssize_t r = read(fd, b.data + b.len, b.cap - b.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fig_err_set(err, code, "%s: %s", path, strerror(errno));
            close(fd);
            fig_buf_free(&b);
            return NULL;
        }
        if (r == 0)
            break;
        b.len += (size_t)r;
        b.data[b.len] = '\0';
        if (b.len > max) { /* the file grew while being read */
            fig_err_set(err, code, "%s: larger than %zu bytes", path, max);
            close(fd);
            fig_buf_free(&b);
            return NULL;
        }
    }
    close(fd);
    if (len_out)
        *len_out = b.len;
    return fig_buf_steal(&b);
}

int fs_mkdir_p(const char *dir, mode_t mode, fig_err_t *err)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) {
        fig_err_set(err, FIG_E_IO, "%s: bad directory path", dir);
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, mode) != 0 && errno != EEXIST) {
            fig_err_set(err, FIG_E_IO, "%s: cannot create directory: %s", path, strerror(errno));
            return -1;
        }
        path[i] = saved;
    }
    return 0;
}

int fs_mkdir_parent(const char *path, mode_t mode, fig_err_t *err)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return 0;
    char dir[PATH_MAX];
    size_t n = (size_t)(slash - path);
    if (n >= sizeof(dir)) {
        fig_err_set(err, FIG_E_IO, "%s: path too long", path);
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    return fs_mkdir_p(dir, mode, err);
}
