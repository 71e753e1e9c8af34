/* attnd's settings table: the shipped example configs pass it, and mistakes are named. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd/attnd.h"

Test(attnd_config, shipped_examples_are_valid) {
    const char *src = getenv("AFD_SRC");
    char pat[512];
    snprintf(pat, sizeof pat, "%s/deploy/examples/attnd*.json", src && *src ? src : ".");
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no example configs match %s", pat);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        afd_err err = {0};
        cr_assert_eq(conf_check_file(&attnd_conf, g.gl_pathv[i], &err), 0, "%s: %s",
                     g.gl_pathv[i], err.msg);
    }
    globfree(&g);
}

Test(attnd_config, flags_and_mistakes) {
    attnd_cfg c;
    afd_err err = {0};
    memset(&c, 0, sizeof c);
    const char *ok[] = {"attnd", "--model", "/m", "--ffn", "h1:1,h2:2", "--ffn-ep-size", "2",
                        "--kv-mem", "2gb"};
    cr_assert_eq(conf_load(&attnd_conf, &c, 9, (char **)ok, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_ffn, 2);
    cr_assert_str_eq(c.ffn[1], "h2:2");
    cr_assert_eq(c.kv_mem, 2ull << 30);
    cr_assert_eq(c.micro_batches, 3);
    conf_free(&attnd_conf, &c);
    const char *no_ffn[] = {"attnd", "--model", "/m"};
    cr_assert_lt(conf_load(&attnd_conf, &c, 3, (char **)no_ffn, &err), 0);
    cr_assert(strstr(err.msg, "ffn"), "%s", err.msg);
    conf_free(&attnd_conf, &c);
    const char *bad_mb[] = {"attnd", "--model", "/m", "--ffn", "h:1", "--micro-batches", "9"};
    cr_assert_lt(conf_load(&attnd_conf, &c, 7, (char **)bad_mb, &err), 0);
    cr_assert(strstr(err.msg, "micro"), "%s", err.msg);
    conf_free(&attnd_conf, &c);
}
