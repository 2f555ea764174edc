/* unconst(p): p without its const, for the few calls whose parameter is not
 * const although they do not write through it (libmicrohttpd's copied
 * response buffers), and for freeing memory owned through a const pointer
 * (a string held in a const field of a shared options struct). Going
 * through uintptr_t says so once, instead of a cast -Wcast-qual would flag
 * at each place. */
#ifndef LIB_UNCONST_H
#define LIB_UNCONST_H

#include <stdint.h>

static inline void *unconst(const void *p)
{
    return (void *)(uintptr_t)p;
}

#endif
