/* The intrusive FIFO of queue.h. */
#include "lib/queue.h"

void queue_push(struct queue *q, struct qlink *l)
{
    l->next = NULL;
    if (q->tail)
        q->tail->next = l;
    else
        q->head = l;
    q->tail = l;
    q->n++;
}

struct qlink *queue_pop(struct queue *q)
{
    struct qlink *l = q->head;
    if (l == NULL)
        return NULL;
    if ((q->head = l->next) == NULL)
        q->tail = NULL;
    l->next = NULL;
    q->n--;
    return l;
}

/* Unlinks *pp (whose predecessor is prev, NULL at the head). */
static void unlink_at(struct queue *q, struct qlink **pp, struct qlink *prev)
{
    struct qlink *l = *pp;
    *pp = l->next;
    if (q->tail == l)
        q->tail = prev;
    l->next = NULL;
    q->n--;
}

int queue_remove(struct queue *q, struct qlink *l)
{
    struct qlink *prev = NULL;
    for (struct qlink **pp = &q->head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == l) {
            unlink_at(q, pp, prev);
            return 1;
        }
    }
    return 0;
}

struct qlink *queue_take_all(struct queue *q)
{
    struct qlink *all = q->head;
    q->head = q->tail = NULL;
    q->n = 0;
    return all;
}

size_t queue_move_if(struct queue *from, struct queue *to,
                     int (*pick)(const struct qlink *l, void *arg), void *arg, size_t max)
{
    size_t moved = 0;
    struct qlink **pp = &from->head, *prev = NULL;
    while (*pp && moved < max) {
        struct qlink *l = *pp;
        if (!pick(l, arg)) {
            prev = l;
            pp = &l->next;
            continue;
        }
        unlink_at(from, pp, prev);
        queue_push(to, l);
        moved++;
    }
    return moved;
}
