/*
 * A growable byte buffer with a hard cap, for everything read from the
 * network: a response larger than its cap is refused, never grown into.
 */
#ifndef LIB_BUF_H
#define LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;   /* allocated */
    size_t max;   /* hard limit on len; 0 = unlimited */
    int overflow; /* set once an append was refused for max */
};

void buf_init(struct buf *b, size_t max);
/* Appends n bytes. Returns 0, or -1 (overflow set) if max would be passed
 * or memory ran out; the buffer is then left as it was. */
int buf_append(struct buf *b, const void *data, size_t n);
/* Room for need bytes (and the NUL) without another allocation; -1 when
 * out of memory. Not bounded by max: a caller reserves what it will add. */
int buf_reserve(struct buf *b, size_t need);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_reset(struct buf *b); /* len = 0, keeps memory */
void buf_free(struct buf *b);  /* frees, back to empty */
/* Hands the data to the caller (who frees it) and empties the buffer.
 * Never returns NULL unless out of memory. */
char *buf_steal(struct buf *b);

#endif
