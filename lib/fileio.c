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

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                      size_t errlen)
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
    const char *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto fail;
        off += (size_t)w;
    }
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
