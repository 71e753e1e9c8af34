/* ffnd's settings table: the shipped example configs pass it, and mistakes are named. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffnd/ffnd.h"

static const char *src_dir(void) {
    const char *s = getenv("AFD_SRC");
    return s && *s ? s : ".";
}

Test(ffnd_config, shipped_examples_are_valid) {
    char pat[512];
    snprintf(pat, sizeof pat, "%s/deploy/examples/ffnd*.json", src_dir());
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no example configs match %s", pat);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        afd_err err = {0};
        cr_assert_eq(conf_check_file(&ffnd_conf, g.gl_pathv[i], &err), 0, "%s: %s",
                     g.gl_pathv[i], err.msg);
    }
    globfree(&g);
}

static int load(ffnd_cfg *c, afd_err *err, int argc, const char **argv) {
    memset(c, 0, sizeof *c);
    return conf_load(&ffnd_conf, c, argc, (char **)argv, err);
}

Test(ffnd_config, defaults_and_flags) {
    ffnd_cfg c;
    afd_err err = {0};
    const char *argv[] = {"ffnd", "--model", "/m", "--ep-size", "2", "--ep-rank", "1",
                          "--batch-window-us", "1ms", "--f2a-dtype", "fp8"};
    cr_assert_eq(load(&c, &err, 11, argv), 0, "%s", err.msg);
    cr_assert_str_eq(c.model, "/m");
    cr_assert_eq(c.ep_rank, 1);
    cr_assert_eq(c.batch_window_us, 1000);
    cr_assert_eq(c.f2a_dtype, 1);
    cr_assert_eq(c.max_tokens, 1024);
    cr_assert_eq(c.peer_timeout_ms, 3000);
    cr_assert_str_eq(c.listen_addr, "127.0.0.1");
    conf_free(&ffnd_conf, &c);
}

Test(ffnd_config, mistakes_are_named) {
    ffnd_cfg c;
    afd_err err = {0};
    const char *no_model[] = {"ffnd"};
    cr_assert_lt(load(&c, &err, 1, no_model), 0);
    cr_assert(strstr(err.msg, "model"), "%s", err.msg);
    conf_free(&ffnd_conf, &c);
    const char *bad_dtype[] = {"ffnd", "--model", "/m", "--f2a-dtype", "fp16"};
    cr_assert_lt(load(&c, &err, 5, bad_dtype), 0);
    cr_assert(strstr(err.msg, "fp16"), "%s", err.msg);
    conf_free(&ffnd_conf, &c);
    const char *typo[] = {"ffnd", "--model", "/m", "--ep-rnak", "1"};
    cr_assert_lt(load(&c, &err, 5, typo), 0);
    cr_assert(strstr(err.msg, "ep-rank") || strstr(err.msg, "ep_rank"), "%s", err.msg);
    conf_free(&ffnd_conf, &c);
}
