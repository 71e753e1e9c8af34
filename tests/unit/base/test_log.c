#include <criterion/criterion.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/log.h"

Test(log, escape_keeps_json_valid) {
    char out[64];
    size_t n = afd_json_escape(out, sizeof out, "a\"b\\c\n\x01\xff");
    cr_assert_str_eq(out, "a\\\"b\\\\c\\n\\u0001\\u00ff");
    cr_assert_eq(n, strlen(out));
}

Test(log, escape_truncates_on_whole_escapes) {
    char out[6];
    afd_json_escape(out, sizeof out, "ab\"cd");
    cr_assert_str_eq(out, "ab\\\"c");
    char tiny[2];
    afd_json_escape(tiny, sizeof tiny, "\"\"");
    cr_assert_str_eq(tiny, "");
}

Test(log, level_parse) {
    cr_assert_eq(afd_log_level_parse("debug"), AFD_LOG_DEBUG);
    cr_assert_eq(afd_log_level_parse("warn"), AFD_LOG_WARN);
    cr_assert_eq(afd_log_level_parse("loud"), -1);
    cr_assert_eq(afd_log_level_parse(NULL), -1);
}

Test(err, errf_formats_and_returns_code) {
    afd_err e;
    int rc = afd_errf(&e, AFD_E_FORMAT, "%s: tensor %s", "x.safetensors", "w");
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert_eq(e.code, AFD_E_FORMAT);
    cr_assert_str_eq(e.msg, "x.safetensors: tensor w");
    cr_assert_eq(afd_errf(NULL, -5, "x"), -5);
    cr_assert_str_eq(afd_strerror(AFD_E_LIMIT), "over limit");
    cr_assert_str_eq(afd_strerror(-2), "No such file or directory");
}
