/*
 * rcu.h - the one RCU flavour of the engine (liburcu-memb) and the ThreadSanitizer annotations it needs.
 *
 * Why annotations: liburcu 0.13 orders memory with its own inline assembly and is linked uninstrumented, so TSan
 * cannot see the happens-before edges that RCU provides (publication through cds_lfht_add, and "every reader that
 * could see an object has left its critical section" before a call_rcu callback frees it). Without help TSan would
 * report those as races. We state the two edges explicitly:
 *   - publication: the writer releases the object's address before adding it; a reader acquires it after finding it;
 *   - reclamation: every read-side unlock releases one global token, and so does dts__call_rcu before it queues a
 *     callback (what the updater wrote into the object before retiring it, such as the owner a callback returns it
 *     to, happens before the callback); every call_rcu callback acquires the token first.
 * Outside TSan builds the macros compile to nothing. They are real edges (RCU guarantees them), not suppressions.
 */
#ifndef DTS_RCU_H
#define DTS_RCU_H

#include <urcu/urcu-memb.h>

#include <urcu/lfstack.h>
#include <urcu/rculfhash.h>

#if defined(__SANITIZE_THREAD__)
#define DTS__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DTS__TSAN 1
#endif
#endif

#ifdef DTS__TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define dts__hb_release(p) __tsan_release((void *)(p))
#define dts__hb_acquire(p) __tsan_acquire((void *)(p))
#else
#define dts__hb_release(p) ((void)(p))
#define dts__hb_acquire(p) ((void)(p))
#endif

extern char dts__rcu_reclaim_token;

static inline void dts__read_lock(void)
{
	urcu_memb_read_lock();
}

static inline void dts__read_unlock(void)
{
	dts__hb_release(&dts__rcu_reclaim_token);
	urcu_memb_read_unlock();
}

/* Queue fn(head) after a grace period. Every retirement goes through here so that the updater's writes to the object
 * happen before its callback (see the top of this file). */
static inline void dts__call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	dts__hb_release(&dts__rcu_reclaim_token);
	urcu_memb_call_rcu(head, fn);
}

/* First statement of every call_rcu callback. */
static inline void dts__reclaim_begin(void)
{
	dts__hb_acquire(&dts__rcu_reclaim_token);
}

#endif /* DTS_RCU_H */
