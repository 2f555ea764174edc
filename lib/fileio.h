/*
 * Files replaced atomically: readers see the old bytes or the new ones,
 * never a mix, and a failed write leaves the old file as it was.
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

#endif
