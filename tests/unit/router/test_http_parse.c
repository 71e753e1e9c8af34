/* The pure parsers of the HTTP front: request heads (and their abuse), framing, chunked
 * bodies fed byte by byte and whole, query parameters, request ids, API keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/http_int.h"

typedef struct parsed {
    char buf[4096];
    rh_hdr hdrs[8];
    rh_head h;
    const char *why;
    int rc;
} parsed;

static void parse(parsed *p, const char *text) {
    snprintf(p->buf, sizeof p->buf, "%s", text);
    p->why = NULL;
    p->rc = rh_parse_head(p->buf, strlen(p->buf), p->hdrs, 8, &p->h, &p->why);
}

Test(http_parse, head_end) {
    cr_assert_eq(rh_head_end("GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY", 31), 27);
    cr_assert_eq(rh_head_end("GET / HTTP/1.1\nHost: x\n\nBODY", 28), 24);
    cr_assert_eq(rh_head_end("GET / HTTP/1.1\r\nHost: x\r\n", 25), -1);
    cr_assert_eq(rh_head_end("GET / HTTP/1.1\r\nHost: x\r\n\r", 26), -1);
    cr_assert_eq(rh_leading_blank("\r\n\nGET", 6), 3);
    cr_assert_eq(rh_leading_blank("\rGET", 4), 0);
}

Test(http_parse, good_head) {
    parsed p;
    parse(&p, "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length:  12 \r\n"
              "X-Empty:\r\nAuthorization: Bearer k\r\n\r\n");
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_assert_str_eq(p.h.method, "POST");
    cr_assert_str_eq(p.h.target, "/v1/chat/completions?x=1");
    cr_assert_eq(p.h.minor, 1);
    cr_assert_eq(p.h.n_hdrs, 4);
    cr_assert_str_eq(rh_head_get(&p.h, "content-length"), "12");
    cr_assert_str_eq(rh_head_get(&p.h, "x-empty"), "");
    cr_assert_null(rh_head_get(&p.h, "Cookie"));
    rh_framing f;
    cr_assert_eq(rh_head_framing(&p.h, &f, &p.why), 0, "%s", p.why);
    cr_assert_eq(f.has_length, 1);
    cr_assert_eq(f.length, 12);
    cr_assert_eq(f.keep_alive, 1);
}

Test(http_parse, absolute_form_and_lf_lines) {
    parsed p;
    parse(&p, "GET http://example.com:80/v1/models?a=b HTTP/1.0\nHost: x\n\n");
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_assert_str_eq(p.h.target, "/v1/models?a=b");
    cr_assert_eq(p.h.minor, 0);
    parse(&p, "GET https://example.com HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(p.rc, 0, "%s", p.why);
    cr_assert_str_eq(p.h.target, "/");
    parse(&p, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(p.rc, 0, "%s", p.why);
}

/* Every malformed head is refused with the status it deserves and a reason. */
Test(http_parse, abuse) {
    static const struct {
        const char *text;
        int rc;
    } cases[] = {
        {"", RH_PE_BAD},
        {"GARBAGE\r\n\r\n", RH_PE_BAD},
        {"GET /\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1 extra\r\n\r\n", RH_PE_BAD},
        {"GET  / HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"GET x HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"G(T / HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1x\r\n\r\n", RH_PE_BAD},
        {"GET / HTTPS/1.1\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/2.0\r\n\r\n", RH_PE_VERSION},
        {"GET / HTTP/0.9\r\n\r\n", RH_PE_VERSION},
        {"GET /\x01 HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"GET * HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\rX\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHost x\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\n: x\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHo\"st: x\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHost: a\rz\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\n"
         "I: 1\r\n\r\n",
         RH_PE_TOO_MANY},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        parsed p;
        parse(&p, cases[k].text);
        cr_assert_eq(p.rc, cases[k].rc, "case %zu (%s): rc %d, want %d", k, cases[k].text, p.rc,
                     cases[k].rc);
        cr_assert(p.why && *p.why, "case %zu has no reason", k);
    }
}

Test(http_parse, nul_in_head) {
    char buf[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    rh_hdr hdrs[4];
    rh_head h;
    const char *why = NULL;
    cr_assert_eq(rh_parse_head(buf, sizeof buf - 1, hdrs, 4, &h, &why), RH_PE_BAD);
    cr_assert_not_null(why);
}

static int framing_of(const char *text, rh_framing *f, const char **why) {
    static parsed p;
    parse(&p, text);
    cr_assert_eq(p.rc, 0, "%s: %s", text, p.why);
    return rh_head_framing(&p.h, f, why);
}

Test(http_parse, framing) {
    rh_framing f;
    const char *why = NULL;
    cr_assert_eq(framing_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &f, &why), 0);
    cr_assert_eq(f.has_length + f.chunked, 0);
    cr_assert_eq(
        framing_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", &f, &why),
        0);
    cr_assert_eq(f.chunked, 1);
    cr_assert_eq(
        framing_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n", &f, &why),
        0);
    cr_assert_eq(f.keep_alive, 0);
    cr_assert_eq(framing_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &f, &why), 0);
    cr_assert_eq(f.keep_alive, 0, "HTTP/1.0 always closes");
    cr_assert_eq(framing_of("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", &f, &why),
                 0);
    cr_assert_eq(f.expect_100, 1);
    cr_assert_eq(framing_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                            "Content-Length: 5\r\n\r\n",
                            &f, &why),
                 0);
    cr_assert_eq(f.length, 5);

    static const struct {
        const char *text;
        int rc;
    } bad[] = {
        {"GET / HTTP/1.1\r\n\r\n", RH_PE_BAD},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", RH_PE_TE},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         RH_PE_TE},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", RH_PE_BAD},
        {"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", RH_PE_EXPECT},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        why = NULL;
        int rc = framing_of(bad[k].text, &f, &why);
        cr_assert_eq(rc, bad[k].rc, "case %zu: rc %d, want %d", k, rc, bad[k].rc);
        cr_assert_not_null(why, "case %zu", k);
    }
}

/* Decodes a whole chunked body; feeds it in pieces of `step` bytes. Returns the final code;
 * out gets the data, *rest the bytes left after the body. */
static int chunked_run(const char *in, size_t step, uint64_t max, char *out, size_t *out_len,
                       size_t *rest) {
    rh_chunked c;
    rh_chunked_init(&c, max, 64);
    size_t n = strlen(in), off = 0, o = 0;
    int rc = RH_CK_MORE;
    while (off < n) {
        size_t avail = n - off < step ? n - off : step, used, dl;
        rc = rh_chunked_step(&c, in + off, avail, &used, &dl);
        cr_assert_leq(used, avail);
        memcpy(out + o, in + off + used - dl, dl);
        o += dl;
        off += used;
        if (rc == RH_CK_DONE || rc < 0) break;
    }
    out[o] = 0;
    *out_len = o;
    *rest = n - off;
    return rc;
}

Test(http_parse, chunked_good) {
    const char *body =
        "5\r\nhello\r\n7;ext=1\r\n, world\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\nNEXT";
    for (size_t step = 1; step <= strlen(body); step++) {
        char out[128];
        size_t len, rest;
        int rc = chunked_run(body, step, 1000, out, &len, &rest);
        cr_assert_eq(rc, RH_CK_DONE, "step %zu: rc %d", step, rc);
        cr_assert_str_eq(out, "hello, world0123456789", "step %zu", step);
        cr_assert_eq(rest, 4, "step %zu: %zu bytes left, want 4 (NEXT)", step, rest);
    }
    char out[16];
    size_t len, rest;
    cr_assert_eq(chunked_run("3\nabc\n0\n\n", 100, 10, out, &len, &rest), RH_CK_DONE);
    cr_assert_str_eq(out, "abc");
}

Test(http_parse, chunked_abuse) {
    static const struct {
        const char *in;
        int rc;
    } cases[] = {
        {"x\r\n", RH_CK_BAD},
        {"\r\n", RH_CK_BAD},
        {"5\r\nhelloXX", RH_CK_BAD},
        {"5\rX", RH_CK_BAD},
        {"1000000000000000\r\n", RH_CK_BAD},
        {"fffffffffffffff\r\n", RH_CK_TOO_LARGE},
        {"b\r\n", RH_CK_TOO_LARGE},
        {"6\r\nabcdef\r\n5\r\n", RH_CK_TOO_LARGE},
        {"1;\x01\r\n", RH_CK_BAD},
        {"0\r\n\rX", RH_CK_BAD},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char out[64];
        size_t len, rest;
        int rc = chunked_run(cases[k].in, 3, 10, out, &len, &rest);
        cr_assert_eq(rc, cases[k].rc, "case %zu: rc %d, want %d", k, rc, cases[k].rc);
    }
    /* a trailer longer than its limit (64) */
    char big[256] = "0\r\n";
    memset(big + 3, 'a', 100);
    strcpy(big + 103, "\r\n\r\n");
    char out[8];
    size_t len, rest;
    cr_assert_eq(chunked_run(big, 7, 10, out, &len, &rest), RH_CK_BAD);
    /* a size line that never ends */
    char longline[2048] = "1;";
    memset(longline + 2, 'e', 2000);
    cr_assert_eq(chunked_run(longline, 64, 10, out, &len, &rest), RH_CK_BAD);
}

Test(http_parse, query_params) {
    char v[32];
    const char *q = "a=1&b=x%20y+z&flag&c=%zz&d=%00&long=0123456789012345678901234567890123&e=";
    cr_assert_eq(rh_query_param(q, "a", v, sizeof v), 1);
    cr_assert_str_eq(v, "1");
    cr_assert_eq(rh_query_param(q, "b", v, sizeof v), 5);
    cr_assert_str_eq(v, "x y z");
    cr_assert_eq(rh_query_param(q, "flag", v, sizeof v), 0);
    cr_assert_str_eq(v, "");
    cr_assert_eq(rh_query_param(q, "e", v, sizeof v), 0);
    cr_assert_eq(rh_query_param(q, "c", v, sizeof v), AFD_E_FORMAT);
    cr_assert_eq(rh_query_param(q, "d", v, sizeof v), AFD_E_FORMAT);
    cr_assert_eq(rh_query_param(q, "long", v, sizeof v), AFD_E_LIMIT);
    cr_assert_eq(rh_query_param(q, "zz", v, sizeof v), AFD_E_NOTFOUND);
    cr_assert_eq(rh_query_param(NULL, "a", v, sizeof v), AFD_E_NOTFOUND);
    cr_assert_eq(rh_query_param("x%41=2", "xA", v, sizeof v), 1, "names are decoded too");
    cr_assert_eq(rh_query_param("a=%4", "a", v, sizeof v), AFD_E_FORMAT);
}

Test(http_parse, request_ids) {
    cr_assert(rh_req_id_ok("abc-123_x.y:z"));
    cr_assert_not(rh_req_id_ok(""));
    cr_assert_not(rh_req_id_ok(NULL));
    cr_assert_not(rh_req_id_ok("has space"));
    cr_assert_not(rh_req_id_ok("tab\there"));
    cr_assert_not(rh_req_id_ok("\xc3\xa9"));
    char id64[65], id65[66];
    memset(id64, 'a', 64);
    id64[64] = 0;
    memset(id65, 'a', 65);
    id65[65] = 0;
    cr_assert(rh_req_id_ok(id64));
    cr_assert_not(rh_req_id_ok(id65));
    char a[40], b[40];
    rh_req_id_make(a, sizeof a);
    rh_req_id_make(b, sizeof b);
    cr_assert_eq(strlen(a), 36, "%s", a);
    cr_assert_eq(strncmp(a, "req-", 4), 0, "%s", a);
    cr_assert_eq(strspn(a + 4, "0123456789abcdef"), 32, "%s", a);
    cr_assert_str_neq(a, b);
    cr_assert(rh_req_id_ok(a));
}

Test(http_parse, tokens_and_values) {
    cr_assert(rh_token_ok("Retry-After"));
    cr_assert_not(rh_token_ok("Bad Name"));
    cr_assert_not(rh_token_ok(""));
    cr_assert(rh_value_ok("3, x\ty"));
    cr_assert_not(rh_value_ok("a\r\nInjected: 1"));
    cr_assert(rh_token_list_ok("authorization, content-type,x-stainless-os", 100));
    cr_assert_not(rh_token_list_ok("a; b", 100));
    cr_assert_not(rh_token_list_ok(" , ", 100));
    cr_assert_not(rh_token_list_ok("abcdef", 3));
    cr_assert_eq(rh_method_bit("POST"), RH_POST);
    cr_assert_eq(rh_method_bit("post"), 0);
    cr_assert_eq(rh_method_bit("PROPFIND"), 0);
}

static char *write_tmp(const char *text) {
    char *path = strdup("/tmp/afd-keys-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(http_keys, load_and_check) {
    char *path = write_tmp("# keys\n\n  sk-one  \r\nsk-two\n   # indented comment\nsk-three");
    rh_keys k = {0};
    afd_err e = {0};
    cr_assert_eq(rh_keys_load(path, &k, &e), 0, "%s", e.msg);
    cr_assert_eq(k.n, 3);
    cr_assert(rh_keys_check(&k, "sk-one", 6));
    cr_assert(rh_keys_check(&k, "sk-three", 8));
    cr_assert_not(rh_keys_check(&k, "sk-on", 5));
    cr_assert_not(rh_keys_check(&k, "sk-one ", 7));
    cr_assert_not(rh_keys_check(&k, "# keys", 6));
    rh_keys_clear(&k);
    unlink(path);
    free(path);
}

Test(http_keys, bad_files_keep_old_keys) {
    char *good = write_tmp("sk-a\n");
    rh_keys k = {0};
    afd_err e = {0};
    cr_assert_eq(rh_keys_load(good, &k, &e), 0, "%s", e.msg);
    static const char *const bad[] = {"# only comments\n\n", "sk-ok\nsk bad space\n", "sk-\x01\n"};
    for (size_t i = 0; i < 3; i++) {
        char *p = write_tmp(bad[i]);
        memset(&e, 0, sizeof e);
        cr_assert_eq(rh_keys_load(p, &k, &e), AFD_E_FORMAT, "case %zu", i);
        cr_assert(strstr(e.msg, p), "message names the file: %s", e.msg);
        cr_assert_eq(k.n, 1, "old keys stay");
        cr_assert(rh_keys_check(&k, "sk-a", 4));
        unlink(p);
        free(p);
    }
    cr_assert(strstr(e.msg, "line 1"), "%s", e.msg);
    cr_assert_lt(rh_keys_load("/nonexistent/keys", &k, &e), 0);
    cr_assert(strstr(e.msg, "/nonexistent/keys"), "%s", e.msg);
    rh_keys_clear(&k);
    unlink(good);
    free(good);
}

Test(http_keys, bearer) {
    size_t n = 0;
    const char *t = rh_bearer_token("Bearer sk-1", &n);
    cr_assert_not_null(t);
    cr_assert_eq(n, 4);
    cr_assert_eq(strncmp(t, "sk-1", n), 0);
    cr_assert_not_null(rh_bearer_token("bearer   sk-1", &n));
    cr_assert_null(rh_bearer_token("Basic abc", &n));
    cr_assert_null(rh_bearer_token("Bearer", &n));
    cr_assert_null(rh_bearer_token("Bearer ", &n));
    cr_assert_null(rh_bearer_token("Bearersk-1", &n));
    cr_assert_null(rh_bearer_token("Bearer a b", &n));
    cr_assert_null(rh_bearer_token(NULL, &n));
}
