/* HTTPS: a self-signed P-256 certificate made with the OpenSSL API for each test; curl -k
 * for JSON, SSE and keep-alive; an OpenSSL client shows TLS 1.1 refused by the server (its
 * alert) and 1.2 accepted, and a client that goes away mid-stream; plain HTTP on the TLS port
 * is dropped and the server keeps serving; certificate and key errors are reported at start. */
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "common/base/alloc.h"
#include "tests/unit/router/http_util.h"

static th_server ts;
static char dir[64], cert_path[96], key_path[96];
static atomic_int closes;

static void make_cert(const char *cpath, const char *kpath) {
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    cr_assert_not_null(pkey);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    cr_assert_gt(X509_sign(x, pkey, EVP_sha256()), 0);
    FILE *f = fopen(cpath, "w");
    cr_assert_not_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    if (kpath) {
        f = fopen(kpath, "w");
        cr_assert_not_null(f);
        PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
        fclose(f);
    }
    X509_free(x);
    EVP_PKEY_free(pkey);
}

/* ---- handlers ---- */

static void h_echo(rh_req *r, void *ud) {
    char out[256];
    int n =
        snprintf(out, sizeof out, "{\"path\":\"%s\",\"id\":\"%s\"}", rh_req_path(r), rh_req_id(r));
    rh_reply_json(r, 200, out, (size_t)n);
}

typedef struct stream {
    rh_req *r;
    struct event *ev;
    int sent, n;
} stream;

static void on_close(rh_req *r, void *arg) {
    stream *st = arg;
    event_free(st->ev);
    free(st);
    atomic_fetch_add(&closes, 1);
}

static void tick(evutil_socket_t fd, short what, void *arg) {
    stream *st = arg;
    char ev[32];
    int len = snprintf(ev, sizeof ev, "{\"i\":%d}", st->sent++);
    rh_sse_send(st->r, ev, (size_t)len);
    if (st->sent == st->n) {
        rh_sse_send(st->r, "[DONE]", 6);
        rh_sse_end(st->r);
        event_free(st->ev);
        free(st);
    }
}

static void h_stream(rh_req *r, void *ud) {
    char n[16] = "1000000";
    rh_req_query_param(r, "n", n, sizeof n);
    stream *st = xcalloc(1, sizeof *st);
    st->r = r;
    st->n = atoi(n);
    rh_sse_start(r);
    rh_on_close(r, on_close, st);
    st->ev = event_new(ts.base, -1, EV_PERSIST, tick, st);
    struct timeval tv = {0, 10000};
    event_add(st->ev, &tv);
}

static void h_metrics(rh_req *r, void *ud) {
    char *text = NULL;
    size_t len = 0;
    afd_metrics_render(ts.reg, &text, &len);
    rh_reply(r, 200, "text/plain", text, len);
    free(text);
}

static void routes(th_server *t) {
    cr_assert_eq(rh_route(t->srv, RH_GET | RH_POST, "/echo", 0, h_echo, t), 0);
    cr_assert_eq(rh_route(t->srv, RH_GET, "/stream", 0, h_stream, t), 0);
    cr_assert_eq(rh_route(t->srv, RH_GET, "/metrics", 0, h_metrics, t), 0);
}

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/afd-http-tls-%d", getpid());
    mkdir(dir, 0700);
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    make_cert(cert_path, key_path);
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void start(void) {
    make_dir();
    rh_config c = {0};
    c.tls_cert = cert_path;
    c.tls_key = key_path;
    c.read_timeout_ms = 2000;
    c.write_timeout_ms = 2000;
    th_start(&ts, c, routes);
}

static void stop(void) {
    th_stop(&ts);
    remove_dir();
}

TestSuite(http_tls, .init = start, .fini = stop, .timeout = 20);

static char *curl(const char *args, int *rc) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -sk --max-time 5 %s", args);
    return th_run(cmd, rc);
}

Test(http_tls, curl_json_and_keep_alive) {
    if (!th_have("curl")) cr_skip("curl is not installed");
    char args[256];
    int rc;
    snprintf(args, sizeof args, "-H 'X-Request-Id: tls-1' https://127.0.0.1:%d/echo", ts.port);
    char *out = curl(args, &rc);
    cr_assert_eq(rc, 0, "curl exit %d: %s", rc, out);
    cr_assert_str_eq(out, "{\"path\":\"/echo\",\"id\":\"tls-1\"}");
    free(out);
    snprintf(args, sizeof args,
             "-o /dev/null -o /dev/null -w '%%{http_code} %%{num_connects} ' "
             "https://127.0.0.1:%d/echo https://127.0.0.1:%d/nope",
             ts.port, ts.port);
    out = curl(args, &rc);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "200 1 404 0 ", "one TLS connection for both: %s", out);
    free(out);
}

Test(http_tls, curl_sse) {
    if (!th_have("curl")) cr_skip("curl is not installed");
    char args[256];
    int rc;
    snprintf(args, sizeof args, "-N https://127.0.0.1:%d/stream?n=3", ts.port);
    char *out = curl(args, &rc);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "data: {\"i\":0}\n\ndata: {\"i\":1}\n\ndata: {\"i\":2}\n\n"
                          "data: [DONE]\n\n");
    free(out);
}

/* An OpenSSL client limited to max_version; returns 1 when the handshake succeeded, and the
 * reason of the last error otherwise in *reason. */
static SSL *tls_connect(int fd, int max_version, SSL_CTX **ctx_out, int *reason) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(ctx);
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    ERR_clear_error();
    *ctx_out = ctx;
    if (SSL_connect(ssl) == 1) return ssl;
    *reason = ERR_GET_REASON(ERR_peek_last_error());
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    *ctx_out = NULL;
    return NULL;
}

Test(http_tls, old_protocols_refused) {
    int fd = th_connect(ts.port);
    SSL_CTX *ctx;
    int reason = 0;
    SSL *ssl = tls_connect(fd, TLS1_1_VERSION, &ctx, &reason);
    cr_assert_null(ssl, "TLS 1.1 handshake succeeded");
    cr_assert_eq(reason, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION,
                 "refused by the server's protocol_version alert, got reason %d", reason);
    close(fd);
    fd = th_connect(ts.port);
    ssl = tls_connect(fd, TLS1_2_VERSION, &ctx, &reason);
    cr_assert_not_null(ssl, "TLS 1.2 handshake failed (reason %d)", reason);
    cr_assert_eq(SSL_version(ssl), TLS1_2_VERSION);
    const char *req = "GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    cr_assert_eq(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
    char buf[4096];
    int n = 0;
    for (int r; (r = SSL_read(ssl, buf + n, (int)sizeof buf - 1 - n)) > 0;)
        n += r;
    buf[n] = 0;
    cr_assert_eq(th_status(buf), 200, "%s", buf);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

Test(http_tls, body_over_limit_answered_before_close) {
    int fd = th_connect(ts.port);
    SSL_CTX *ctx;
    int reason = 0;
    SSL *ssl = tls_connect(fd, TLS1_3_VERSION, &ctx, &reason);
    cr_assert_not_null(ssl, "reason %d", reason);
    const char *req = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n";
    SSL_write(ssl, req, (int)strlen(req));
    char junk[16384];
    memset(junk, 'j', sizeof junk);
    SSL_write(ssl, junk, (int)sizeof junk); /* unread by the server */
    char buf[4096];
    int n = 0;
    for (int r;
         n < (int)sizeof buf - 1 && (r = SSL_read(ssl, buf + n, (int)sizeof buf - 1 - n)) > 0;)
        n += r;
    buf[n] = 0;
    cr_assert_eq(th_status(buf), 413, "%s", buf);
    cr_assert(strstr(buf, "\"code\":\"request_too_large\""), "%s", buf);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

Test(http_tls, client_gone_mid_stream) {
    int fd = th_connect(ts.port);
    SSL_CTX *ctx;
    int reason = 0;
    SSL *ssl = tls_connect(fd, TLS1_3_VERSION, &ctx, &reason);
    cr_assert_not_null(ssl, "reason %d", reason);
    const char *req = "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n";
    SSL_write(ssl, req, (int)strlen(req));
    char buf[512];
    int n = 0;
    while (n < (int)sizeof buf - 1 && !memmem(buf, (size_t)n, "data: {\"i\":1}", 13)) {
        int r = SSL_read(ssl, buf + n, (int)sizeof buf - 1 - n);
        cr_assert_gt(r, 0, "stream ended early");
        n += r;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    cr_assert(th_wait_eq(&closes, 1, 3000), "on_close ran %d times", atomic_load(&closes));
    usleep(50000);
    cr_assert_eq(atomic_load(&closes), 1);
}

Test(http_tls, plain_http_on_tls_port) {
    char *r = th_ask(ts.port, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(th_status(r), -1, "no HTTP answer in clear: %s", r);
    free(r);
    if (!th_have("curl")) return;
    char args[128];
    int rc;
    snprintf(args, sizeof args, "https://127.0.0.1:%d/metrics", ts.port);
    char *out = curl(args, &rc);
    cr_assert_eq(rc, 0, "still serving: %s", out);
    cr_assert(strstr(out, "afd_router_http_limit_total{limit=\"tls_error\"} 1\n"), "%s", out);
    free(out);
}

Test(http_tls_setup, load_errors) {
    make_dir();
    struct event_base *base = event_base_new();
    afd_err e = {0};
    rh_config c = {.tls_cert = "/nonexistent/cert.pem", .tls_key = key_path};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "certificate /nonexistent/cert.pem"), "%s", e.msg);

    char junk[128], other[128];
    snprintf(junk, sizeof junk, "%s/junk.pem", dir);
    FILE *f = fopen(junk, "w");
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    c = (rh_config){.tls_cert = junk, .tls_key = key_path};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, junk), "%s", e.msg);

    c = (rh_config){.tls_cert = cert_path, .tls_key = junk};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "key"), "%s", e.msg);

    snprintf(other, sizeof other, "%s/other.pem", dir);
    make_cert(other, NULL); /* a certificate for another key */
    c = (rh_config){.tls_cert = other, .tls_key = key_path};
    cr_assert_null(rh_server_start(base, &c, &e));
    cr_assert(strstr(e.msg, "does not match"), "%s", e.msg);

    c = (rh_config){.tls_cert = cert_path, .tls_key = key_path};
    rh_server *s = rh_server_start(base, &c, &e);
    cr_assert_not_null(s, "%s", e.msg);
    rh_server_free(s);
    event_base_free(base);
    remove_dir();
}
