/* bench.h: afd-bench subcommands and the ISA-specific peak loops they share.
 *
 * Each subcommand is `int bench_<name>(int argc, char **argv)` (argv[0] is the subcommand),
 * returns the process exit code, prints human-readable lines on stdout and ends with exactly
 * one JSON line of its headline figures. Add a subcommand: write bench/<name>.c and add a row
 * to the table in bench/main.c.
 */
#ifndef AFD_BENCH_H
#define AFD_BENCH_H

#include <stdint.h>

int bench_kernels(int argc, char **argv);

/* Register-resident fp32 FMA loops: iters x (accumulators x lanes x 2) flop; the return value
 * only keeps the compiler honest. */
double peak_fma_avx512(int64_t iters);
double peak_fma_avx2(int64_t iters);
/* AMX tdpbf16ps on register-resident tiles: iters x 4 x 16384 flop. Needs the tile-data
 * permission (cpu_amx_usable()). Returns the first accumulator element (iters*4*32/4 for the
 * all-ones inputs it uses), or -1 when AMX is not built in. */
double peak_amx_bf16(int64_t iters);

#endif
