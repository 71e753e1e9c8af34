/* bench.h: afd-bench subcommands and the ISA-specific peak loops they share.
 *
 * Each subcommand is `int bench_<name>(int argc, char **argv)` (argv[0] is the subcommand),
 * returns the process exit code, prints human-readable lines on stdout and ends with exactly
 * one JSON line of its headline figures. Add a subcommand: write bench/<name>.c and add a row
 * to the table in bench/main.c.
 */
#ifndef AFD_BENCH_H
#define AFD_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int bench_kernels(int argc, char **argv);
/* bench/decode.c: AFD pipeline vs single process decode throughput (issue 4's figures). */
int bench_decode(int argc, char **argv);
/* bench/link.c: A2F+F2A round trip through ffnd vs a bare UCP ping-pong (link_raw.c). */
int bench_link(int argc, char **argv);
/* bench/serve.c: open-loop load on an OpenAI-compatible streaming server (TTFT, TPOT, goodput). */
int bench_serve(int argc, char **argv);
/* bench/profile.c: the afd-profile v1 file afd-plan reads (docs/planning.md §4). */
int bench_profile(int argc, char **argv);

/* Register-resident fp32 FMA loops: iters x (accumulators x lanes x 2) flop; the return value
 * only keeps the compiler honest. */
double peak_fma_avx512(int64_t iters);
double peak_fma_avx2(int64_t iters);
/* AMX tdpbf16ps on register-resident tiles: iters x 4 x 16384 flop. Needs the tile-data
 * permission (cpu_amx_usable()). Returns the first accumulator element (iters*4*32/4 for the
 * all-ones inputs it uses), or -1 when AMX is not built in. */
double peak_amx_bf16(int64_t iters);

/* A bare UCP active-message ping-pong between this process and a forked echo process on
 * 127.0.0.1 (bench/link_raw.c): req_bytes out, resp_bytes back, busy-polled; us[iters] gets
 * each round trip in microseconds after `warmup` unrecorded ones. UCX_TLS etc. come from the
 * environment. 0 or negative. */
typedef struct raw_link_opts {
    size_t req_bytes, resp_bytes;
    int iters, warmup;
    bool err_peer; /* UCP_ERR_HANDLING_MODE_PEER (TCP only) instead of NONE */
} raw_link_opts;
int raw_link_pingpong(const raw_link_opts *o, double *us);

/* An ffnd process for a benchmark (bench/ffnd_proc.c): BUILD/bin/ffnd on 127.0.0.1 with
 * ephemeral ports, one thread, plus `extra` flags (NULL-terminated); it dies with the
 * benchmark. 0 once its data port is known, or negative (-EIO: it exited; -ETIMEDOUT). */
typedef struct bench_ffnd {
    int pid;
    int port;
    char port_file[128];
} bench_ffnd;
int bench_ffnd_start(const char *build, const char *model, const char *const *extra,
                     bench_ffnd *p);
void bench_ffnd_stop(bench_ffnd *p); /* SIGTERM (drain) and wait */

#endif
