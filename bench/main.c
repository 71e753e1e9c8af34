/* afd-bench: performance measurements, one subcommand each.
 *
 *   afd-bench <command> [options]      afd-bench <command> --help
 *
 * A subcommand prints readable lines and ends with exactly one JSON line (its headline
 * figures), so scripts read `tail -1`. New subcommands are rows of `commands` below.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "common/base/log.h"

typedef struct bench_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} bench_cmd;

static const bench_cmd commands[] = {
    {"kernels", bench_kernels,
     "CPU math kernels against this machine's roofline (bandwidth, FMA/AMX peak): matmul at\n"
     "                batch 1/8/64 in BF16 and FP8, paged attention over 1K-32K tokens"},
    {"decode", bench_decode,
     "decode tokens/s and step time: AFD pipeline (attention here, ffnd over UCX) with m = 1\n"
     "                and m = 3 micro-batches vs the single-process engine, batch 1-64"},
    {"link", bench_link,
     "A2F+F2A round trip of one micro-batch through ffnd (--wire-only) against a bare UCP\n"
     "                ping-pong of the same bytes, shared memory and TCP (docs/benchmarks.md)"},
    {"profile", bench_profile,
     "measured attention/FFN/link times of a model on this machine: the profile\n"
     "                `afd-plan plan --profile` reads (docs/planning.md section 4)"},
    {"serve", bench_serve,
     "open-loop load on an OpenAI-compatible server (the router): TTFT, TPOT, E2E\n"
     "                percentiles, tokens/s, 429/503 rejections, goodput at a TPOT SLA"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
    fprintf(out, "usage: afd-bench <command> [options]   (afd-bench <command> --help)\n\n"
                 "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-12s  %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\nexamples:\n"
                 "  afd-bench kernels --quick              # CI smoke run, < 30 s\n"
                 "  afd-bench kernels                      # full run, a few minutes\n"
                 "  afd-bench kernels --isa avx2 --threads 1\n"
                 "  afd-bench kernels --quick | tail -1 | jq .matmul_b1_bf16_frac\n"
                 "  afd-bench link --quick | tail -1 | jq .link_ratio_shm\n"
                 "  afd-bench decode --model build/models/mini | tail -1\n"
                 "  afd-bench profile --model build/models/tiny --quick --out /tmp/p.json\n"
                 "  afd-bench serve --url http://127.0.0.1:8000 --rate 4 --duration 60 | tail -1\n");
}

int main(int argc, char **argv) {
    afd_log_init("afd-bench", AFD_LOG_WARN, AFD_LOG_TEXT);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "afd-bench: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
