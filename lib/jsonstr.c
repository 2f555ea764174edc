/* JSON string helpers; see jsonstr.h. */
#include "lib/jsonstr.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"

const char *json_plain_run(const char *p, const char *end)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x, q, b;
        memcpy(&x, p, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x)) & highs)
            break;
        p += 8;
    }
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

int buf_json_string(struct buf *b, const char *s)
{
    static const char ctl[] = "\b\f\n\r\t", short_esc[] = "bfnrt";
    const char *end = s + strlen(s);
    buf_append(b, "\"", 1);
    for (;;) {
        const char *run = s;
        s = json_plain_run(s, end);
        buf_append(b, run, (size_t)(s - run));
        if (s == end)
            break;
        unsigned char c = (unsigned char)*s;
        const char *e = strchr(ctl, c);
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else if (e)
            snprintf(esc, sizeof esc, "\\%c", short_esc[e - ctl]);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        buf_puts(b, esc);
        s++;
    }
    buf_append(b, "\"", 1);
    return b->overflow ? -1 : 0;
}
