#include "common/layers/kvcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/alloc.h"
#include "common/base/err.h"

int kv_pool_init(afd_kv_pool *pool, afd_backend *be, const afd_kv_layout *layout, int n_blocks) {
    memset(pool, 0, sizeof *pool);
    size_t bytes;
    if (n_blocks <= 0 || afd_mul_size((size_t)n_blocks, layout->block_bytes, &bytes) != 0)
        return -EINVAL;
    pool->base = afd_be_alloc(be, bytes);
    pool->free_ids = afd_try_alloc((size_t)n_blocks * sizeof(int32_t));
    if (!pool->base || !pool->free_ids) {
        afd_be_release(be, pool->base);
        free(pool->free_ids);
        pool->base = NULL, pool->free_ids = NULL;
        return -ENOMEM;
    }
    pool->layout = *layout;
    pool->be = be;
    pool->n_blocks = n_blocks;
    /* Lowest ids on top of the stack: a fresh pool hands out 0, 1, 2, ... */
    for (int i = 0; i < n_blocks; i++)
        pool->free_ids[i] = n_blocks - 1 - i;
    pool->n_free = n_blocks;
    return 0;
}

void kv_pool_free(afd_kv_pool *pool) {
    if (!pool || !pool->base)
        return;
    afd_be_release(pool->be, pool->base);
    free(pool->free_ids);
    memset(pool, 0, sizeof *pool);
}

int kv_blocks_for(const afd_kv_pool *pool, int n_tokens) {
    int bs = pool->layout.block_size;
    return (n_tokens + bs - 1) / bs;
}

void kv_seq_init(afd_kv_seq *seq) { memset(seq, 0, sizeof *seq); }

int kv_seq_reserve(afd_kv_pool *pool, afd_kv_seq *seq, int n_tokens) {
    int need = kv_blocks_for(pool, n_tokens);
    if (need <= seq->n_blocks)
        return 0;
    int more = need - seq->n_blocks;
    if (more > pool->n_free)
        return AFD_E_LIMIT;
    if (need > seq->cap) {
        int cap = seq->cap ? seq->cap : 4;
        while (cap < need)
            cap *= 2;
        seq->blocks = xrealloc(seq->blocks, (size_t)cap * sizeof(int32_t));
        seq->cap = cap;
    }
    for (int i = 0; i < more; i++)
        seq->blocks[seq->n_blocks++] = pool->free_ids[--pool->n_free];
    return 0;
}

void kv_seq_release(afd_kv_pool *pool, afd_kv_seq *seq) {
    for (int i = seq->n_blocks - 1; i >= 0; i--)
        pool->free_ids[pool->n_free++] = seq->blocks[i];
    free(seq->blocks);
    kv_seq_init(seq);
}
