/* kvcache.h: the paged KV cache: a pool of fixed-size blocks and per-sequence block tables.
 *
 * The pool owns one backend buffer of n_blocks * layout.block_bytes (afd_kv_layout in
 * backend.h: one block holds every layer's K and V for block_size positions) and a free list.
 * Blocks are named by index, never by pointer. A sequence (afd_kv_seq) owns the indices in its
 * table and returns them with kv_seq_release(). Capacity is accounted in blocks; the router
 * reads it in tokens (free_blocks * block_size).
 *
 * Errors: kv_seq_reserve() returns AFD_E_LIMIT when the pool cannot cover the request; the
 * sequence is left exactly as it was (nothing half-allocated). Not thread-safe: one owner
 * thread (the engine's step loop).
 */
#ifndef AFD_KVCACHE_H
#define AFD_KVCACHE_H

#include <stdint.h>

#include "common/backend/backend.h"

typedef struct afd_kv_pool {
    afd_kv_layout layout;
    afd_backend *be;
    void *base;        /* backend memory, n_blocks * layout.block_bytes */
    int n_blocks;
    int32_t *free_ids; /* stack of free block ids */
    int n_free;
} afd_kv_pool;

typedef struct afd_kv_seq {
    int32_t *blocks;   /* block table: position p lives in blocks[p / block_size] */
    int n_blocks, cap;
    int n_tokens;      /* positions stored so far */
} afd_kv_seq;

/* Allocates the pool. 0, or -ENOMEM (the size is from config: checked allocation). */
int kv_pool_init(afd_kv_pool *pool, afd_backend *be, const afd_kv_layout *layout, int n_blocks);
void kv_pool_free(afd_kv_pool *pool);
/* Number of blocks needed for n_tokens positions. */
int kv_blocks_for(const afd_kv_pool *pool, int n_tokens);

void kv_seq_init(afd_kv_seq *seq);
/* Ensures the table covers n_tokens positions, taking blocks from the pool. 0 or AFD_E_LIMIT. */
int kv_seq_reserve(afd_kv_pool *pool, afd_kv_seq *seq, int n_tokens);
/* Returns every block to the pool and empties the table (the seq can be reused). */
void kv_seq_release(afd_kv_pool *pool, afd_kv_seq *seq);
/* Slot (block * block_size + offset) of position p; p must be covered. */
static inline int32_t kv_seq_slot(const afd_kv_pool *pool, const afd_kv_seq *seq, int p) {
    int bs = pool->layout.block_size;
    return seq->blocks[p / bs] * bs + p % bs;
}

#endif
