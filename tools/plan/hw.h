/* hw.h: the accelerator table of the cost model.
 *
 * Built in: the Step-3 paper's four accelerators (price per card-hour, BF16 and FP8 FLOP/s,
 * memory bandwidth) with its network assumption (400 Gb/s x 8 NICs for H800 and H20, 200 Gb/s
 * x 8 for A800 and 910B). A JSON file extends or replaces it:
 *   {"replace_builtin": false,
 *    "accelerators": [{"name": "L20", "usd_per_hour": 0.9, "bf16_flops": 1.19e14,
 *                      "fp8_flops": 2.39e14, "mem_bytes_per_s": 8.64e11,
 *                      "net_bytes_per_s": 1e11}]}
 * An entry whose name matches a table row replaces that row; others are appended. fp8_flops
 * null or 0 means no FP8 (the BF16/INT8 rate is used, with 8-bit storage as in the paper).
 * Plain data; thread-safe.
 */
#ifndef AFD_PLAN_HW_H
#define AFD_PLAN_HW_H

#include "common/base/err.h"

#define PLAN_MAX_HW 32
#define PLAN_HW_FILE_MAX_BYTES (1u << 20)

typedef struct plan_hw {
    char name[32];
    double usd_per_hour;   /* price of one card for one hour */
    double bf16_flops;     /* FLOP/s, dense BF16/FP16 */
    double fp8_flops;      /* FLOP/s, dense FP8; 0 = not supported */
    double mem_bw;         /* bytes/s of memory bandwidth */
    double net_bw;         /* bytes/s of network bandwidth per card's server share */
} plan_hw;

typedef struct plan_hw_table {
    int n;
    plan_hw hw[PLAN_MAX_HW];
} plan_hw_table;

/* Fills *t with the built-in rows (H800, H20, A800, 910B). */
void plan_hw_builtin(plan_hw_table *t);
/* Merges the accelerators of a JSON file into *t (see above). 0 or negative with *err naming
 * the file, entry and key; *t is unchanged on error. */
int plan_hw_load(plan_hw_table *t, const char *path, afd_err *err);
/* Row by name (case-sensitive), NULL if absent. */
const plan_hw *plan_hw_find(const plan_hw_table *t, const char *name);

/* The FLOP rate the cost model uses: FP8 where the card has it, else BF16. */
double plan_hw_flops(const plan_hw *h);
/* USD per FLOP and per byte of memory traffic at full utilisation. */
double plan_hw_usd_per_flop(const plan_hw *h);
double plan_hw_usd_per_byte(const plan_hw *h);
/* Compute-to-bandwidth ratio (FLOPs per byte), the roofline knee. */
double plan_hw_roofline(const plan_hw *h);

#endif
