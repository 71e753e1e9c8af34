/* cmd_hardware.c: `afd-plan hardware` — the accelerator table and its unit costs. */
#include <getopt.h>

#include "tools/plan/cli.h"

static void hw_usage(FILE *f) {
    fprintf(f,
        "usage: afd-plan hardware [--hardware FILE] [--json]\n"
        "Prints the accelerator table: USD per card-hour, BF16 and FP8 FLOP/s, memory and\n"
        "network bytes/s, with USD per FLOP, USD per byte and roofline (FLOPs per byte).\n"
        "Built in (Step-3 paper Table 4): H800, H20, A800, 910B; network 400 Gb/s x 8 NICs for\n"
        "H800/H20, 200 Gb/s x 8 for A800/910B.\n\n"
        "  --hardware FILE   JSON to extend or replace the table:\n"
        "      {\"replace_builtin\": false, \"accelerators\": [{\"name\": \"L20\",\n"
        "       \"usd_per_hour\": 0.9, \"bf16_flops\": 1.19e14, \"fp8_flops\": 2.39e14,\n"
        "       \"mem_bytes_per_s\": 8.64e11, \"net_bytes_per_s\": 1e11}]}\n"
        "      (a row with an existing name replaces it; fp8_flops null or 0 = no FP8)\n"
        "  --json            one JSON object {HW: {...}}\n");
}

int cmd_hardware(int argc, char **argv) {
    static const struct option lo[] = {{"hardware", required_argument, 0, 'w'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *file = NULL;
    bool json = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'w')
            file = optarg;
        else if (c == 'j')
            json = true;
        else {
            hw_usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind < argc)
        return cli_fail("hardware: unexpected argument \"%s\"", argv[optind]);
    plan_hw_table t;
    if (cli_load_hw(file, &t) < 0)
        return 2;
    json_t *o = json_object();
    if (!json)
        printf("accelerator   USD/h   BF16 FLOP/s    FP8 FLOP/s   memory B/s  network B/s  "
               "USD/FLOP   USD/byte  roofline\n");
    for (int i = 0; i < t.n; i++) {
        const plan_hw *h = &t.hw[i];
        if (json)
            json_object_set_new(
                o, h->name,
                json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "usd_per_hour",
                          cli_num(h->usd_per_hour), "bf16_flops", cli_num(h->bf16_flops),
                          "fp8_flops", h->fp8_flops > 0 ? cli_num(h->fp8_flops) : json_null(),
                          "mem_bytes_per_s", cli_num(h->mem_bw), "net_bytes_per_s",
                          cli_num(h->net_bw), "usd_per_flop", cli_num(plan_hw_usd_per_flop(h)),
                          "usd_per_byte", cli_num(plan_hw_usd_per_byte(h)), "roofline",
                          cli_num(plan_hw_roofline(h))));
        else
            printf("  %-10s %6.2f  %12.3e  %12.3e  %11.3e  %11.3e  %9.3e  %9.3e  %7.0f\n",
                   h->name, h->usd_per_hour, h->bf16_flops, h->fp8_flops, h->mem_bw, h->net_bw,
                   plan_hw_usd_per_flop(h), plan_hw_usd_per_byte(h), plan_hw_roofline(h));
    }
    if (json)
        return cli_print_json(o);
    json_decref(o);
    return 0;
}
