#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/conf.h"
#include "common/base/log.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

typedef struct tcfg {
    bool verbose;
    int port;
    int64_t big;
    uint64_t mem;
    double ratio;
    int64_t timeout_ms;
    int64_t window_us;
    char *addr;
    char *token;
    int level;
    char **peers;
    int n_peers;
} tcfg;

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

static const conf_opt opts[] = {
    {.name = "verbose", .type = CONF_BOOL, .offset = offsetof(tcfg, verbose), .help = "talk more"},
    {.name = "listen_port", .type = CONF_INT, .offset = offsetof(tcfg, port), .min = 0,
     .max = 65535, .def = "7000", .help = "data port"},
    {.name = "big", .type = CONF_I64, .offset = offsetof(tcfg, big), .def = "-5",
     .help = "a 64-bit number"},
    {.name = "mem", .type = CONF_SIZE, .offset = offsetof(tcfg, mem), .min = 4096,
     .max = 17179869184.0, .def = "1gb", .help = "memory budget"},
    {.name = "ratio", .type = CONF_DOUBLE, .offset = offsetof(tcfg, ratio), .min = 0, .max = 1,
     .def = "0.5", .help = "a fraction"},
    {.name = "timeout_ms", .type = CONF_MS, .offset = offsetof(tcfg, timeout_ms), .min = 1,
     .max = 3600000, .def = "2s", .help = "peer timeout"},
    {.name = "window_us", .type = CONF_US, .offset = offsetof(tcfg, window_us), .def = "200",
     .help = "batch window"},
    {.name = "addr", .type = CONF_STR, .offset = offsetof(tcfg, addr), .def = "127.0.0.1",
     .help = "listen address"},
    {.name = "token", .type = CONF_STR, .offset = offsetof(tcfg, token), .flags = CONF_SECRET,
     .help = "api token"},
    {.name = "log_level", .type = CONF_ENUM, .offset = offsetof(tcfg, level), .def = "info",
     .choices = levels, .help = "log level"},
    {.name = "peers", .type = CONF_STRLIST, .offset = offsetof(tcfg, peers),
     .count_offset = offsetof(tcfg, n_peers), .def = "a,b", .help = "peer addresses"},
};

static const conf_table table = {.prog = "testd",
                                 .summary = "a test daemon",
                                 .usage_examples = "  testd --listen-port 8000\n",
                                 .opts = opts,
                                 .n_opts = sizeof opts / sizeof opts[0]};

#define ARGV(...) ((char *[]){"testd", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"testd", __VA_ARGS__}) / sizeof(char *)))
#define LOAD(cfg, err, ...) conf_load(&table, (cfg), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (err))

static char tmpl_path[64];

static const char *write_file(const char *text) {
    strcpy(tmpl_path, "/tmp/afd_conf_XXXXXX");
    int fd = mkstemp(tmpl_path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return tmpl_path;
}

/* Loads with --config <text as file> plus extra flags; returns rc, the file is removed. */
static int load_file(tcfg *c, afd_err *e, const char *text, const char *flag) {
    const char *p = write_file(text);
    char *argv[] = {"testd", "--config", (char *)p, (char *)flag, NULL};
    int rc = conf_load(&table, c, flag ? 4 : 3, argv, e);
    unlink(p);
    return rc;
}

Test(conf, defaults) {
    tcfg c;
    memset(&c, 0xab, sizeof c);
    afd_err e = {0};
    int rc = conf_load(&table, &c, 1, ARGV(NULL), &e);
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_assert_eq(c.verbose, false);
    cr_assert_eq(c.port, 7000);
    cr_assert_eq(c.big, -5);
    cr_assert_eq(c.mem, 1ull << 30);
    cr_assert_float_eq(c.ratio, 0.5, 0);
    cr_assert_eq(c.timeout_ms, 2000);
    cr_assert_eq(c.window_us, 200);
    cr_assert_str_eq(c.addr, "127.0.0.1");
    cr_assert_null(c.token);
    cr_assert_eq(c.level, 2);
    cr_assert_eq(c.n_peers, 2);
    cr_assert_str_eq(c.peers[0], "a");
    cr_assert_str_eq(c.peers[1], "b");
    cr_assert_null(c.peers[2]);
    conf_free(&table, &c);
    cr_assert_null(c.addr);
    cr_assert_null(c.peers);
    cr_assert_eq(c.n_peers, 0);
    conf_free(&table, &c); /* twice is fine */
}

Test(conf, every_type_from_flags) {
    tcfg c;
    afd_err e = {0};
    int rc = LOAD(&c, &e, "--verbose", "--listen-port", "8080", "--big=-9000000000", "--mem",
                  "8gb", "--ratio=0.25", "--timeout-ms", "1.5m", "--window_us=1.5ms", "--addr",
                  "0.0.0.0", "--token=s3cret", "--log-level", "debug", "--peers", "x:1,y:2,z:3");
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_assert_eq(c.verbose, true);
    cr_assert_eq(c.port, 8080);
    cr_assert_eq(c.big, -9000000000ll);
    cr_assert_eq(c.mem, 8ull << 30);
    cr_assert_float_eq(c.ratio, 0.25, 0);
    cr_assert_eq(c.timeout_ms, 90000);
    cr_assert_eq(c.window_us, 1500);
    cr_assert_str_eq(c.addr, "0.0.0.0");
    cr_assert_str_eq(c.token, "s3cret");
    cr_assert_eq(c.level, 3);
    cr_assert_eq(c.n_peers, 3);
    cr_assert_str_eq(c.peers[2], "z:3");
    conf_free(&table, &c);
}

Test(conf, every_type_from_file) {
    tcfg c;
    afd_err e = {0};
    int rc = load_file(&c, &e,
                       "{\"verbose\": true, \"listen_port\": 9000, \"big\": 123456789012,"
                       " \"mem\": \"512k\", \"ratio\": 1, \"timeout_ms\": 250,"
                       " \"window_us\": \"2ms\", \"addr\": \"::1\", \"token\": \"t\","
                       " \"log_level\": \"warn\", \"peers\": [\"p1\", \"p2\", \"p3\", \"p4\"]}",
                       NULL);
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_assert_eq(c.verbose, true);
    cr_assert_eq(c.port, 9000);
    cr_assert_eq(c.big, 123456789012ll);
    cr_assert_eq(c.mem, 512u * 1024);
    cr_assert_float_eq(c.ratio, 1.0, 0);
    cr_assert_eq(c.timeout_ms, 250);
    cr_assert_eq(c.window_us, 2000);
    cr_assert_str_eq(c.addr, "::1");
    cr_assert_str_eq(c.token, "t");
    cr_assert_eq(c.level, 1);
    cr_assert_eq(c.n_peers, 4);
    cr_assert_str_eq(c.peers[3], "p4");
    conf_free(&table, &c);
}

Test(conf, size_as_json_number_and_null_string) {
    tcfg c;
    afd_err e = {0};
    int rc = load_file(&c, &e, "{\"mem\": 8589934592, \"addr\": null, \"peers\": []}", NULL);
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_assert_eq(c.mem, 8ull << 30);
    cr_assert_null(c.addr);
    cr_assert_eq(c.n_peers, 0);
    conf_free(&table, &c);
}

Test(conf, precedence_flag_over_file_over_default) {
    tcfg c;
    afd_err e = {0};
    int rc = load_file(&c, &e, "{\"listen_port\": 9000, \"addr\": \"10.0.0.1\"}",
                       "--listen-port=9100");
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_assert_eq(c.port, 9100);                /* flag */
    cr_assert_str_eq(c.addr, "10.0.0.1");      /* file */
    cr_assert_eq(c.timeout_ms, 2000);          /* default */
    conf_free(&table, &c);
    /* The flag wins even when it comes before --config. */
    const char *p = write_file("{\"listen_port\": 9000}");
    char *argv[] = {"testd", "--listen_port", "9200", "--config", (char *)p, NULL};
    rc = conf_load(&table, &c, 5, argv, &e);
    unlink(p);
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_assert_eq(c.port, 9200);
    conf_free(&table, &c);
}

Test(conf, booleans) {
    tcfg c;
    afd_err e = {0};
    cr_assert_eq(LOAD(&c, &e, "--verbose", "--no-verbose"), 0, "%s", e.msg);
    cr_assert_eq(c.verbose, false);
    conf_free(&table, &c);
    cr_assert_eq(LOAD(&c, &e, "--verbose=yes"), 0, "%s", e.msg);
    cr_assert_eq(c.verbose, true);
    conf_free(&table, &c);
    cr_assert_eq(load_file(&c, &e, "{\"verbose\": true}", "--no-verbose"), 0, "%s", e.msg);
    cr_assert_eq(c.verbose, false);
    conf_free(&table, &c);
    cr_assert_eq(LOAD(&c, &e, "--verbose=maybe"), AFD_E_FORMAT);
    cr_assert_str_eq(e.msg, "--verbose: \"maybe\" is not a boolean (true/false)");
    cr_assert_eq(LOAD(&c, &e, "--no-verbose=1"), AFD_E_FORMAT);
    cr_assert_str_eq(e.msg, "--no-verbose takes no value");
    cr_assert_eq(LOAD(&c, &e, "--no-mem"), AFD_E_FORMAT);
    cr_assert_str_eq(e.msg, "unknown flag --no-mem");
}

#define EXPECT_ERR(rc_expr, code, text)                                                            \
    do {                                                                                           \
        int rc_ = (rc_expr);                                                                       \
        cr_assert_eq(rc_, (code), "rc %d, msg %s", rc_, e.msg);                                    \
        cr_assert_str_eq(e.msg, (text));                                                           \
    } while (0)

Test(conf, flag_errors) {
    tcfg c;
    memset(&c, 0, sizeof c);
    afd_err e = {0};
    EXPECT_ERR(LOAD(&c, &e, "--listen-port", "70000"), AFD_E_LIMIT,
               "--listen-port: 70000 is above the maximum 65535");
    cr_assert_null(c.addr, "strings are freed on error");
    EXPECT_ERR(LOAD(&c, &e, "--listen-port", "-1"), AFD_E_LIMIT,
               "--listen-port: -1 is below the minimum 0");
    EXPECT_ERR(LOAD(&c, &e, "--listen-port", "80x"), AFD_E_FORMAT,
               "--listen-port: \"80x\" is not an integer");
    EXPECT_ERR(LOAD(&c, &e, "--listen-port", "99999999999"), AFD_E_LIMIT,
               "--listen-port: \"99999999999\" is out of range");
    EXPECT_ERR(LOAD(&c, &e, "--listen-port"), AFD_E_FORMAT, "--listen-port needs a value");
    EXPECT_ERR(LOAD(&c, &e, "--mem", "1k"), AFD_E_LIMIT, "--mem: 1k is below the minimum 4kb");
    EXPECT_ERR(LOAD(&c, &e, "--mem", "32gb"), AFD_E_LIMIT,
               "--mem: 32gb is above the maximum 16gb");
    EXPECT_ERR(LOAD(&c, &e, "--mem", "12xb"), AFD_E_FORMAT,
               "--mem: \"12xb\" is not a size (bytes, or with a unit: 512k, 8gb, 1.5GiB)");
    EXPECT_ERR(LOAD(&c, &e, "--ratio", "1.5"), AFD_E_LIMIT, "--ratio: 1.5 is above the maximum 1");
    EXPECT_ERR(LOAD(&c, &e, "--ratio", "nan"), AFD_E_FORMAT, "--ratio: \"nan\" is not a number");
    EXPECT_ERR(LOAD(&c, &e, "--timeout-ms", "0"), AFD_E_LIMIT,
               "--timeout-ms: 0 is below the minimum 1ms");
    EXPECT_ERR(LOAD(&c, &e, "--timeout-ms", "1.5ms"), AFD_E_FORMAT,
               "--timeout-ms: \"1.5ms\" is not a whole number of milliseconds (250, 50ms, 2s, "
               "1.5m, 1h)");
    EXPECT_ERR(LOAD(&c, &e, "--log-level", "loud"), AFD_E_FORMAT,
               "--log-level: \"loud\" is not one of: error, warn, info, debug");
    EXPECT_ERR(LOAD(&c, &e, "--peers", "a,,b"), AFD_E_FORMAT,
               "--peers: empty item in list \"a,,b\"");
}

Test(conf, unknown_flags_and_positionals) {
    tcfg c;
    afd_err e = {0};
    EXPECT_ERR(LOAD(&c, &e, "--listen-prot", "1"), AFD_E_FORMAT,
               "unknown flag --listen-prot (did you mean --listen-port?)");
    EXPECT_ERR(LOAD(&c, &e, "--timeout=5"), AFD_E_FORMAT,
               "unknown flag --timeout (did you mean --timeout-ms?)");
    EXPECT_ERR(LOAD(&c, &e, "--zzzzzz"), AFD_E_FORMAT, "unknown flag --zzzzzz");
    EXPECT_ERR(LOAD(&c, &e, "-p"), AFD_E_FORMAT, "unknown flag -p (flags start with --)");
    EXPECT_ERR(LOAD(&c, &e, "stray"), AFD_E_FORMAT,
               "unexpected argument \"stray\" (testd takes only flags)");
    EXPECT_ERR(LOAD(&c, &e, "--", "--verbose"), AFD_E_FORMAT,
               "unexpected argument \"--verbose\" (testd takes only flags)");
    EXPECT_ERR(LOAD(&c, &e, "--config", "/nonexistent/x.json"), AFD_E_NOTFOUND,
               "config file /nonexistent/x.json: No such file or directory");
    EXPECT_ERR(LOAD(&c, &e, "--config", "a", "--config", "b"), AFD_E_FORMAT,
               "--config given twice");
}

Test(conf, file_errors) {
    tcfg c;
    afd_err e = {0};
    int rc = load_file(&c, &e, "{\"listen_prot\": 1}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, ": unknown key \"listen_prot\" (did you mean \"listen_port\"?)"), "%s",
              e.msg);
    cr_assert(strncmp(e.msg, "/tmp/afd_conf_", 14) == 0, "file named: %s", e.msg);
    rc = load_file(&c, &e, "{\"listen_port\": \"80\"}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, ": key \"listen_port\": expected an integer, got a string"), "%s",
              e.msg);
    rc = load_file(&c, &e, "{\"listen_port\": 65536}", NULL);
    cr_assert_eq(rc, AFD_E_LIMIT);
    cr_assert(strstr(e.msg, ": key \"listen_port\": 65536 is above the maximum 65535"), "%s",
              e.msg);
    rc = load_file(&c, &e, "{\"mem\": -1}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, ": key \"mem\": \"-1\" is not a size"), "%s", e.msg);
    rc = load_file(&c, &e, "{\"peers\": [\"a\", 3]}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, ": key \"peers\": item 1 is an integer, expected a string"), "%s",
              e.msg);
    rc = load_file(&c, &e, "{\"verbose\": 1}", NULL);
    cr_assert(strstr(e.msg, ": key \"verbose\": expected true or false, got an integer"), "%s",
              e.msg);
    rc = load_file(&c, &e, "[1, 2]", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, ": top level must be an object"), "%s", e.msg);
    rc = load_file(&c, &e, "{\"addr\": \"a\", \"addr\": \"b\"}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, "duplicate object key"), "%s", e.msg);
    rc = load_file(&c, &e, "{\"addr\": ", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, ":1:"), "line named: %s", e.msg);
    rc = load_file(&c, &e, "{\"addr\": \"a\\u0000b\"}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert(strstr(e.msg, "NUL"), "%s", e.msg);
    rc = load_file(&c, &e, "{\"addr\": \"x\", \"timeout_ms\": \"1y\"}", NULL);
    cr_assert_eq(rc, AFD_E_FORMAT);
    cr_assert_null(c.addr, "the file's string was freed on error");
}

Test(conf, file_over_limit) {
    size_t n = CONF_FILE_MAX + 10;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{', big[n - 1] = '}', big[n] = 0;
    tcfg c;
    afd_err e = {0};
    int rc = load_file(&c, &e, big, NULL);
    free(big);
    cr_assert_eq(rc, AFD_E_LIMIT, "%d %s", rc, e.msg);
    cr_assert(strstr(e.msg, "1048586 bytes, over the limit of 1048576"), "%s", e.msg);
}

Test(conf, check_file) {
    afd_err e = {0};
    const char *p = write_file("{\"listen_port\": 1, \"peers\": [\"a\"], \"token\": \"x\"}");
    cr_assert_eq(conf_check_file(&table, p, &e), 0, "%s", e.msg);
    unlink(p);
    p = write_file("{\"listen_port\": 1, \"bogus\": 2}");
    cr_assert_eq(conf_check_file(&table, p, &e), AFD_E_FORMAT);
    cr_assert(strstr(e.msg, "unknown key \"bogus\""), "%s", e.msg);
    unlink(p);
}

Test(conf, help_lists_every_option) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    conf_print_help(&table, f);
    fclose(f);
    const char *want[] = {"Usage: testd [--config FILE] [options]",
                          "a test daemon",
                          "--verbose, --no-verbose",
                          "--listen-port N",
                          "default 7000; 0..65535",
                          "--big N",
                          "--mem SIZE",
                          "default 1gb; 4kb..16gb",
                          "--ratio X",
                          "--timeout-ms DURATION",
                          "1ms..3600000ms",
                          "--window-us DURATION",
                          "--addr STR",
                          "--token STR",
                          "--log-level CHOICE",
                          "one of: error, warn, info, debug",
                          "--peers A,B,..",
                          "Examples:\n  testd --listen-port 8000\n",
                          "-h, --help"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        cr_assert(strstr(buf, want[k]), "help lacks \"%s\":\n%s", want[k], buf);
    free(buf);
}

Test(conf, help_flag_returns_conf_help) {
    tcfg c;
    afd_err e = {0};
    fflush(stdout);
    int saved = dup(1);
    FILE *devnull = fopen("/dev/null", "w");
    dup2(fileno(devnull), 1);
    int rc = LOAD(&c, &e, "--listen-port", "1", "--help");
    int rc2 = LOAD(&c, &e, "-h");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(devnull);
    cr_assert_eq(rc, CONF_HELP);
    cr_assert_eq(rc2, CONF_HELP);
}

static const conf_opt pos_opts[] = {
    {.name = "model", .type = CONF_STR, .offset = offsetof(tcfg, addr),
     .flags = CONF_REQUIRED | CONF_POSITIONAL, .help = "model dir"},
    {.name = "files", .type = CONF_STRLIST, .offset = offsetof(tcfg, peers),
     .count_offset = offsetof(tcfg, n_peers), .help = "files"},
};
static const conf_table pos_table = {.prog = "p", .opts = pos_opts, .n_opts = 2};

Test(conf, positional_and_required) {
    tcfg c;
    afd_err e = {0};
    char *a1[] = {"p", "/models/x", NULL};
    cr_assert_eq(conf_load(&pos_table, &c, 2, a1, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.addr, "/models/x");
    conf_free(&pos_table, &c);
    char *a2[] = {"p", "--model", "/m", NULL};
    cr_assert_eq(conf_load(&pos_table, &c, 3, a2, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.addr, "/m");
    conf_free(&pos_table, &c);
    char *a3[] = {"p", "x", "y", NULL};
    EXPECT_ERR(conf_load(&pos_table, &c, 3, a3, &e), AFD_E_FORMAT,
               "unexpected argument \"y\" (p takes one <model>)");
    char *a4[] = {"p", "--files", "f", NULL};
    EXPECT_ERR(conf_load(&pos_table, &c, 3, a4, &e), AFD_E_NOTFOUND,
               "p: model is required (flag --model or key \"model\")");
}

Test(conf, bad_tables) {
    tcfg c;
    afd_err e = {0};
    conf_opt bad[] = {{.name = "x", .type = CONF_INT, .offset = offsetof(tcfg, port), .min = 0,
                       .max = 10, .def = "11"}};
    conf_table t = {.prog = "b", .opts = bad, .n_opts = 1};
    EXPECT_ERR(conf_load(&t, &c, 1, ARGV(NULL), &e), AFD_E_FORMAT,
               "conf table b: default of \"x\": 11 is above the maximum 10");
    bad[0] = (conf_opt){.name = "Bad-Name", .type = CONF_INT};
    EXPECT_ERR(conf_load(&t, &c, 1, ARGV(NULL), &e), AFD_E_FORMAT,
               "conf table b: bad option name \"Bad-Name\"");
    bad[0] = (conf_opt){.name = "e", .type = CONF_ENUM};
    EXPECT_ERR(conf_load(&t, &c, 1, ARGV(NULL), &e), AFD_E_FORMAT,
               "conf table b: enum \"e\" has no choices");
    conf_opt twice[] = {{.name = "a", .type = CONF_INT}, {.name = "a", .type = CONF_BOOL}};
    conf_table t2 = {.prog = "b", .opts = twice, .n_opts = 2};
    EXPECT_ERR(conf_load(&t2, &c, 1, ARGV(NULL), &e), AFD_E_FORMAT,
               "conf table b: option \"a\" defined twice");
}

Test(conf, size_parsing_table) {
    static const struct {
        const char *s;
        int rc;
        uint64_t v;
    } cases[] = {
        {"0", 0, 0},
        {"4096", 0, 4096},
        {"4096b", 0, 4096},
        {"512k", 0, 512 * 1024},
        {"512K", 0, 512 * 1024},
        {"512kb", 0, 512 * 1024},
        {"8gb", 0, 8ull << 30},
        {"8GB", 0, 8ull << 30},
        {"8GiB", 0, 8ull << 30},
        {"8 g", 0, 8ull << 30},
        {"1.5g", 0, 3ull << 29},
        {"0.5k", 0, 512},
        {"2t", 0, 2ull << 40},
        {"1p", 0, 1ull << 50},
        {"15e", 0, 15ull << 60},
        {"18446744073709551615", 0, UINT64_MAX},
        {"16e", AFD_E_LIMIT, 0},
        {"18446744073709551616", AFD_E_LIMIT, 0},
        {"99999999999999999999999999", AFD_E_LIMIT, 0},
        {"-1", AFD_E_FORMAT, 0},
        {"+1", AFD_E_FORMAT, 0},
        {"12xb", AFD_E_FORMAT, 0},
        {"1.5", AFD_E_FORMAT, 0},
        {"0.3k", AFD_E_FORMAT, 0},
        {"1.", AFD_E_FORMAT, 0},
        {".5k", AFD_E_FORMAT, 0},
        {"", AFD_E_FORMAT, 0},
        {"k", AFD_E_FORMAT, 0},
        {"8gbb", AFD_E_FORMAT, 0},
        {" 8", AFD_E_FORMAT, 0},
        {"8g ", AFD_E_FORMAT, 0},
        {"1e3", AFD_E_FORMAT, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint64_t v = 12345;
        int rc = conf_parse_size(cases[k].s, &v);
        cr_assert_eq(rc, cases[k].rc, "\"%s\": rc %d, want %d", cases[k].s, rc, cases[k].rc);
        if (rc == 0)
            cr_assert_eq(v, cases[k].v, "\"%s\": %llu, want %llu", cases[k].s,
                         (unsigned long long)v, (unsigned long long)cases[k].v);
    }
}

Test(conf, duration_parsing_table) {
    static const struct {
        const char *s;
        int64_t unit;
        int rc;
        int64_t v;
    } cases[] = {
        {"250", 1000000, 0, 250},
        {"50ms", 1000000, 0, 50},
        {"2s", 1000000, 0, 2000},
        {"1.5m", 1000000, 0, 90000},
        {"1min", 1000000, 0, 60000},
        {"1h", 1000000, 0, 3600000},
        {"1d", 1000000, 0, 86400000},
        {"0.001s", 1000000, 0, 1},
        {"1000us", 1000000, 0, 1},
        {"200", 1000, 0, 200},
        {"1.5ms", 1000, 0, 1500},
        {"3 us", 1000, 0, 3},
        {"1500ns", 1000, AFD_E_FORMAT, 0},
        {"1.5ms", 1000000, AFD_E_FORMAT, 0},
        {"1ns", 1, 0, 1},
        {"-1s", 1000000, AFD_E_FORMAT, 0},
        {"5parsecs", 1000000, AFD_E_FORMAT, 0},
        {"5S", 1000000, AFD_E_FORMAT, 0},
        {"", 1000000, AFD_E_FORMAT, 0},
        {"s", 1000000, AFD_E_FORMAT, 0},
        {"9223372036854775807", 1, 0, INT64_MAX},
        {"9223372036854775808", 1, AFD_E_LIMIT, 0},
        {"200000000000000d", 1000, AFD_E_LIMIT, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t v = -7;
        int rc = conf_parse_duration(cases[k].s, cases[k].unit, &v);
        cr_assert_eq(rc, cases[k].rc, "\"%s\": rc %d, want %d", cases[k].s, rc, cases[k].rc);
        if (rc == 0)
            cr_assert_eq(v, cases[k].v, "\"%s\": %lld, want %lld", cases[k].s, (long long)v,
                         (long long)cases[k].v);
    }
}

Test(conf, dump_masks_secrets) {
    tcfg c;
    afd_err e = {0};
    cr_assert_eq(LOAD(&c, &e, "--token", "hunter2", "--peers", "q"), 0, "%s", e.msg);
    char *masked = conf_dump_json(&table, &c, 1), *clear = conf_dump_json(&table, &c, 0);
    cr_assert_str_eq(masked,
                     "{\"verbose\":false,\"listen_port\":7000,\"big\":-5,\"mem\":1073741824,"
                     "\"ratio\":0.5,\"timeout_ms\":2000,\"window_us\":200,\"addr\":\"127.0.0.1\","
                     "\"token\":\"***\",\"log_level\":\"info\",\"peers\":[\"q\"]}");
    cr_assert(strstr(clear, "\"token\":\"hunter2\""), "%s", clear);
    free(masked);
    free(clear);
    conf_free(&table, &c);
}

/* Runs conf_log_effective with stderr captured into a file; returns the text (malloc'd). */
static char *capture_log(const conf_table *t, const void *cfg) {
    char path[] = "/tmp/afd_conf_log_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    int saved = dup(2);
    dup2(fd, 2);
    afd_log_init("testd", AFD_LOG_INFO, AFD_LOG_JSON);
    conf_log_effective(t, cfg);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    cr_assert_eq(pread(fd, buf, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return buf;
}

Test(conf, log_effective_masks_secrets) {
    tcfg c;
    afd_err e = {0};
    cr_assert_eq(LOAD(&c, &e, "--token", "hunter2"), 0, "%s", e.msg);
    char *out = capture_log(&table, &c);
    cr_assert_null(strstr(out, "hunter2"), "secret leaked: %s", out);
    cr_assert(strstr(out, "effective config: {\\\"verbose\\\":false"), "%s", out);
    cr_assert(strstr(out, "\\\"token\\\":\\\"***\\\""), "%s", out);
    char *nl = strchr(out, '\n');
    cr_assert(nl && nl[1] == 0, "one line: %s", out);
    free(out);
    conf_free(&table, &c);
}

Test(conf, log_effective_splits_long_configs) {
    tcfg c;
    afd_err e = {0};
    char list[4000];
    size_t n = 0;
    for (int k = 0; k < 200; k++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%shost%03d", k ? "," : "", k);
    cr_assert_eq(LOAD(&c, &e, "--peers", list), 0, "%s", e.msg);
    char *out = capture_log(&table, &c);
    cr_assert(strstr(out, "effective config (part 1/2)"), "%s", out);
    cr_assert(strstr(out, "effective config (part 2/2)"), "%s", out);
    cr_assert(strstr(out, "host199"), "nothing truncated");
    free(out);
    conf_free(&table, &c);
}

Test(conf, free_is_safe_after_any_error) {
    tcfg c;
    afd_err e = {0};
    memset(&c, 0xab, sizeof c); /* garbage pointers: conf_load must initialise them first */
    cr_assert_eq(LOAD(&c, &e, "--bogus"), AFD_E_FORMAT);
    cr_assert_null(c.addr);
    cr_assert_null(c.peers);
    conf_free(&table, &c);
    memset(&c, 0xab, sizeof c);
    fflush(stdout);
    int saved = dup(1);
    FILE *devnull = fopen("/dev/null", "w");
    dup2(fileno(devnull), 1);
    int rc = LOAD(&c, &e, "--help");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(devnull);
    cr_assert_eq(rc, CONF_HELP);
    conf_free(&table, &c);
}

/* Criterion does not fail a test on LeakSanitizer's exit report, so ask for a check here. */
Test(conf, load_free_cycles_leak_nothing) {
    afd_err e = {0};
    for (int k = 0; k < 3; k++) {
        tcfg c;
        cr_assert_eq(load_file(&c, &e, "{\"addr\": \"x\", \"peers\": [\"a\", \"b\"]}",
                               "--peers=c,d,e"),
                     0, "%s", e.msg);
        conf_free(&table, &c);
        cr_assert_eq(load_file(&c, &e, "{\"addr\": \"x\", \"peers\": [\"a\", 1]}", NULL),
                     AFD_E_FORMAT);
        cr_assert_eq(LOAD(&c, &e, "--token", "t", "--peers", "a,,b"), AFD_E_FORMAT);
    }
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks reported above");
#else
    cr_skip_test("not an ASan build: leaks are checked by `make asan`");
#endif
}
