/* Atomic file replacement and capped reads; see fileio.h. */
#include "lib/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"

static int write_all(int fd, const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* One part at a time out of fill (see fileio.h), written out in pieces of
 * about FLUSH_BYTES. -1 with errno set (ENOMEM when fill failed). */
#define FLUSH_BYTES 65536
static int write_parts(int fd, file_fill_fn fill, void *arg)
{
    struct buf b;
    int more = 1, rc = 0;
    buf_init(&b, 0);
    while (more && rc == 0) {
        more = fill(arg, &b);
        if (more < 0 || b.overflow) {
            errno = ENOMEM;
            rc = -1;
        } else if (b.len >= FLUSH_BYTES || !more) {
            rc = write_all(fd, b.data, b.len);
            buf_reset(&b);
        }
    }
    buf_free(&b);
    return rc;
}

/* The text is data (fill NULL) or what fill makes. */
static int write_atomic(const char *path, const void *data, size_t len, file_fill_fn fill,
                        void *arg, mode_t mode, char *err, size_t errlen)
{
    char dir[4096], tmp[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    if (slash == dir)
        snprintf(dir, sizeof dir, "/");
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, slash ? strrchr(path, '/') + 1 : base);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create a temporary file in %s: %s", path, dir,
                 strerror(errno));
        return -1;
    }
    if ((fill ? write_parts(fd, fill, arg) : write_all(fd, data, len)) < 0)
        goto fail;
    if (fsync(fd) < 0 || fchmod(fd, mode) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                      size_t errlen)
{
    return write_atomic(path, data, len, NULL, NULL, mode, err, errlen);
}

int file_write_atomic_parts(const char *path, file_fill_fn fill, void *arg, mode_t mode, char *err,
                            size_t errlen)
{
    return write_atomic(path, NULL, 0, fill, arg, mode, err, errlen);
}

enum file_read_rc file_read_capped(const char *path, size_t max, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? FILE_READ_MISSING : FILE_READ_ERROR;
    struct buf b;
    buf_init(&b, max);
    char chunk[8192];
    size_t n;
    enum file_read_rc rc = FILE_READ_OK;
    while (rc == FILE_READ_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) < 0)
            rc = b.overflow ? FILE_READ_TOO_BIG : FILE_READ_ERROR;
    if (rc == FILE_READ_OK && ferror(f))
        rc = FILE_READ_ERROR; /* errno is the failed read's */
    fclose(f);
    if (rc != FILE_READ_OK) {
        buf_free(&b);
        return rc;
    }
    *len = b.len;
    *data = buf_steal(&b); /* NUL-terminated, as a buf always is */
    return *data ? FILE_READ_OK : FILE_READ_ERROR;
}
