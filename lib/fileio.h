/*
 * Files replaced atomically: readers see the old bytes or the new ones,
 * never a mix, and a failed write leaves the old file as it was. And files
 * read whole, never past a cap.
 */
#ifndef LIB_FILEIO_H
#define LIB_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes data to a temporary file in path's directory, fsyncs it, sets mode,
 * renames it over path and fsyncs the directory. 0, or -1 with err naming
 * the path and the reason (the temporary file is removed). */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                      size_t errlen);

struct buf;
/* Appends the next part of a file's text to b: 1 while more follows, 0
 * after the last, -1 when it failed (out of memory). */
typedef int (*file_fill_fn)(void *arg, struct buf *b);
/* The same, the text made by fill one part at a time and written out as it
 * comes, so that a large file is never held whole in memory. A failing
 * fill leaves the old file as it was. */
int file_write_atomic_parts(const char *path, file_fill_fn fill, void *arg, mode_t mode, char *err,
                            size_t errlen);

enum file_read_rc {
    FILE_READ_OK = 0,
    FILE_READ_MISSING = 1, /* no such file (ENOENT) */
    FILE_READ_TOO_BIG = 2, /* more than max bytes */
    FILE_READ_ERROR = -1,  /* errno says why */
};

/* Reads the whole file at path, of at most max bytes, into *data (NUL
 * terminated, the caller frees it) and *len. Each caller words its own
 * errors from the result. */
enum file_read_rc file_read_capped(const char *path, size_t max, char **data, size_t *len);

#endif
