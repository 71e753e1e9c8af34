/* peak_amx.c: the AMX bf16 peak loop (built with the AMX flags; call only when
 * cpu_amx_usable()). Four 16x16 fp32 accumulator tiles, two A and two B tiles loaded once:
 * every tdpbf16ps is 16x16x32 multiply-adds = 16384 flop. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "bench/bench.h"

typedef struct tile_cfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_cfg;

double peak_amx_bf16(int64_t iters) {
    tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++)
        cfg.colsb[i] = 64, cfg.rows[i] = 16;
    static uint16_t ones[16 * 32];
    for (int i = 0; i < 16 * 32; i++)
        ones[i] = 0x3f80; /* bf16 1.0 */
    float c[16 * 16];
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    for (int64_t i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    _tile_release();
    return c[0];
}
