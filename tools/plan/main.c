/* afd-plan: the Step-3 paper's decoding-cost model and a deployment planner for AFD pools.
 * See docs/planning.md for the model, its assumptions and how to profile. */
#include <stdio.h>
#include <string.h>

#include "tools/plan/cli.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: afd-plan COMMAND [options]      (afd-plan COMMAND --help for its options)\n"
        "Decoding cost, MoE sparsity limits and pool sizing for Attention-FFN Disaggregation,\n"
        "after the Step-3 paper (arXiv 2507.19427). Models are Hugging Face config.json files\n"
        "(Step-3, DeepSeek-V3/Kimi K2 MLA, Qwen3-MoE and other GQA families; see models/).\n\n"
        "commands:\n"
        "  cost      theoretical cost per decoded token at a context length: KV bytes, attention\n"
        "            FLOPs, linear FLOPs, FFN FLOPs (8-bit weights and KV), USD per 1M tokens on\n"
        "            each accelerator, and the cheapest attention + FFN (AFD) pairing\n"
        "  sparsity  arithmetic limits of the FFN side: minimum MoE sparsity each accelerator's\n"
        "            network allows, and the batch a dense / this MoE FFN needs (B_dense, B_MoE)\n"
        "  plan      from a measured profile of this deployment (afd-bench), the number of\n"
        "            attention and FFN instances, micro-batches and batch that maximise tokens/s\n"
        "            per machine (or per dollar) under a TPOT target, with predicted TPOT\n"
        "  hardware  the accelerator table (price, FLOP/s, bandwidths, unit costs)\n\n"
        "units: context in tokens (8k = 8192); TPOT in milliseconds; FLOP/s and bytes/s as\n"
        "plain numbers; prices in USD per hour; costs in USD per 1M decoded tokens; profile\n"
        "times in microseconds per layer. --json prints one JSON object for tools.\n"
        "exit status: 0 done, 1 no layout meets the target, 2 bad usage or input.\n\n"
        "examples:\n"
        "  afd-plan cost --model models/step3 --context 8k\n"
        "  afd-plan cost --model models/deepseek-v3/config.json --context 32768 --json\n"
        "  afd-plan sparsity --model models/kimi-k2 --json\n"
        "  afd-plan plan --model models/step3 --profile bench/profiles/example.json --tpot-ms 50\n");
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {{"cost", cmd_cost},
                {"sparsity", cmd_sparsity},
                {"plan", cmd_plan},
                {"hardware", cmd_hardware}};
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].run(argc - 1, argv + 1);
    cli_fail("unknown command \"%s\" (cost, sparsity, plan, hardware; --help)", argv[1]);
    return 2;
}
