#include <criterion/criterion.h>

#include "common/backend/backend.h"
#include "common/base/err.h"
#include "common/layers/kvcache.h"

static afd_backend *be;
static afd_kv_pool pool;

static void setup(void) {
    cr_assert_eq(afd_cpu_backend_new("generic", 1, &be), 0);
    afd_kv_layout layout;
    afd_kv_layout_init(&layout, AFD_DT_BF16, 16, 2, 1, 64);
    cr_assert_eq(kv_pool_init(&pool, be, &layout, 8), 0);
}

static void teardown(void) {
    kv_pool_free(&pool);
    afd_backend_free(be);
}

TestSuite(kvcache, .init = setup, .fini = teardown, .timeout = 10);

Test(kvcache, reserve_grows_by_blocks_and_release_returns_all) {
    afd_kv_seq s;
    kv_seq_init(&s);
    cr_assert_eq(kv_seq_reserve(&pool, &s, 1), 0);
    cr_assert_eq(s.n_blocks, 1);
    cr_assert_eq(kv_seq_reserve(&pool, &s, 16), 0);
    cr_assert_eq(s.n_blocks, 1, "16 positions fit one block of 16, got %d", s.n_blocks);
    cr_assert_eq(kv_seq_reserve(&pool, &s, 17), 0);
    cr_assert_eq(s.n_blocks, 2);
    cr_assert_eq(pool.n_free, 6);
    kv_seq_release(&pool, &s);
    cr_assert_eq(pool.n_free, 8);
    cr_assert_eq(s.n_blocks, 0);
}

Test(kvcache, exhaustion_is_refused_without_partial_allocation) {
    afd_kv_seq a, b;
    kv_seq_init(&a);
    kv_seq_init(&b);
    cr_assert_eq(kv_seq_reserve(&pool, &a, 16 * 6), 0);
    cr_assert_eq(kv_seq_reserve(&pool, &b, 16 * 3), AFD_E_LIMIT);
    cr_assert_eq(b.n_blocks, 0, "nothing half-allocated, got %d blocks", b.n_blocks);
    cr_assert_eq(pool.n_free, 2);
    cr_assert_eq(kv_seq_reserve(&pool, &b, 16 * 2), 0);
    cr_assert_eq(pool.n_free, 0);
    kv_seq_release(&pool, &a);
    kv_seq_release(&pool, &b);
    cr_assert_eq(pool.n_free, 8);
}

Test(kvcache, slots_follow_the_block_table) {
    afd_kv_seq a, b;
    kv_seq_init(&a);
    kv_seq_init(&b);
    cr_assert_eq(kv_seq_reserve(&pool, &a, 1), 0); /* block 0 */
    cr_assert_eq(kv_seq_reserve(&pool, &b, 1), 0); /* block 1 */
    cr_assert_eq(kv_seq_reserve(&pool, &a, 20), 0); /* block 2 */
    cr_assert_eq(kv_seq_slot(&pool, &a, 3), a.blocks[0] * 16 + 3);
    cr_assert_eq(kv_seq_slot(&pool, &a, 19), a.blocks[1] * 16 + 3);
    cr_assert_neq(a.blocks[1], b.blocks[0]);
    kv_seq_release(&pool, &a);
    kv_seq_release(&pool, &b);
}
