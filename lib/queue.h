/*
 * An intrusive FIFO: an element embeds a struct qlink and is found back
 * from it with QUEUE_ITEM. Nothing is allocated; an element is in at most
 * one queue through one link. Used for Consul calls waiting for a slot,
 * HAProxy commands queued and sent, and Kong tasks.
 */
#ifndef LIB_QUEUE_H
#define LIB_QUEUE_H

#include <stddef.h>

struct qlink {
    struct qlink *next;
};

struct queue {
    struct qlink *head, *tail;
    size_t n;
};

#define QUEUE_INIT    \
    {                 \
        NULL, NULL, 0 \
    }
/* The element of type T whose member M is the link l. */
#define QUEUE_ITEM(l, T, M) ((T *)(void *)((char *)(l)-offsetof(T, M)))
#define QUEUE_CITEM(l, T, M) ((const T *)(const void *)((const char *)(l)-offsetof(T, M)))
/* Every link of q in order; a body that unlinks l must leave the loop. */
#define QUEUE_EACH(l, q) for (struct qlink *l = (q)->head; l; l = l->next)

void queue_push(struct queue *q, struct qlink *l);
/* The first link, unlinked; NULL when q is empty. */
struct qlink *queue_pop(struct queue *q);
/* Unlinks l from q: 1, or 0 when it was not in q. */
int queue_remove(struct queue *q, struct qlink *l);
/* All of q, in order, unlinked from it as a NULL-terminated chain: for
 * callbacks that may queue more while the chain is walked. */
struct qlink *queue_take_all(struct queue *q);
/* Moves, in order, each link of from that pick(l, arg) accepts to the end
 * of to, up to max of them; pick is asked after each move, so it may look
 * at to. Returns how many moved. */
size_t queue_move_if(struct queue *from, struct queue *to,
                     int (*pick)(const struct qlink *l, void *arg), void *arg, size_t max);

#endif
