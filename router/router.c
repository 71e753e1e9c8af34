/* router.c: afd-router's start-up, loop and shutdown (router.h). */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/alloc.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/notify.h"
#include "common/model/config.h"
#include "common/model/safetensors.h"
#include "common/model/weights.h"
#include "common/net/portfile.h"

#include "router/router.h"

#ifndef AFD_VERSION
#define AFD_VERSION "0.1.0"
#endif

static int load_model(router *r, afd_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", r->cfg.model);
    int rc = afd_config_load(path, &r->mcfg, err);
    if (rc)
        return rc;
    st_set *set;
    if ((rc = st_set_open(r->cfg.model, &set, err)))
        return rc;
    r->fingerprint = afd_model_fingerprint(&r->mcfg, set);
    st_set_free(set);
    if ((rc = tok_load(r->cfg.model, &r->tok, err)))
        return rc;
    if (tok_vocab_size(r->tok) > r->mcfg.vocab)
        return afd_errf(err, AFD_E_MISMATCH, "%s: the tokenizer has %d ids, the model %d",
                        r->cfg.model, tok_vocab_size(r->tok), r->mcfg.vocab);
    r->tst = tok_state_new(r->tok);
    if (!r->tst)
        return afd_errf(err, -ENOMEM, "tokenizer state");
    if ((rc = tok_chat_init(&r->chat, r->tok, err)))
        return rc;
    r->detok_cap = tok_stream_max_out(r->tok);
    r->detok_buf = xmalloc(r->detok_cap);
    if (!r->chat.template_known)
        log_warn("%s: tokenizer_config.json's chat_template is not Step-3's; prompts are "
                 "rendered in Step-3's format anyway",
                 r->cfg.model);
    return 0;
}

static void describe(router *r) {
    wire_hello *h = &r->hello;
    memset(h, 0, sizeof *h);
    h->proto_min = WIRE_VERSION_MIN, h->proto_max = WIRE_VERSION_MAX;
    h->role = WIRE_ROLE_ROUTER;
    h->instance_id = 0xfffffff0u;
    h->model_fingerprint = r->fingerprint;
    h->ep_size = h->tp_size = 1;
    h->n_layers = (uint32_t)r->mcfg.n_layers, h->n_experts = (uint32_t)r->mcfg.n_experts;
    h->hidden = (uint32_t)r->mcfg.hidden, h->top_k = (uint16_t)r->mcfg.top_k;
    h->a2f_dtype = WIRE_DT_E4M3, h->f2a_dtype = WIRE_DT_BF16;
    h->max_tok = 1;
    snprintf(h->name, sizeof h->name, "afd-router");
    ctrl_limits_default(&r->clim);
    r->clim.vocab = (uint32_t)r->mcfg.vocab;
    oa_limits_default(&r->olim);
    r->olim.vocab = (uint32_t)tok_vocab_size(r->tok);
    r->olim.max_n = (uint32_t)r->cfg.max_n;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    router *r = arg;
    (void)what;
    if (r->draining)
        return;
    log_info("signal %d: draining (up to %lld ms)", (int)sig, (long long)r->cfg.drain_timeout_ms);
    r->draining = true;
    r->drain_deadline_ns = afd_now_ns() + (uint64_t)r->cfg.drain_timeout_ms * 1000000u;
    rh_stop_accepting(r->http);
    afd_notify_stopping();
    event_base_loopbreak(r->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    router *r = arg;
    (void)fd, (void)what;
    pool_tick(r);
    serve_tick(r);
    afd_notify_watchdog(); /* from the loop: a wedged loop stops petting */
    char why[160];
    bool ok = pool_ready(r, why, sizeof why);
    uint64_t now = afd_now_ns();
    if (ok && !r->notified_ready) {
        r->notified_ready = true;
        afd_notify_ready("serving: tokenizer loaded, attnd pool ready");
    }
    if (now - r->last_status_ns > 5000000000ull) {
        r->last_status_ns = now;
        afd_notify_status("%s: %d open request(s)", ok ? "serving" : why,
                          rh_open_requests(r->http));
    }
    if (r->draining)
        event_base_loopbreak(r->base);
}

int router_init(router **out, const router_cfg *cfg, afd_err *err) {
    *out = NULL;
    router *r = xcalloc(1, sizeof *r);
    r->cfg = *cfg;
    if (!r->cfg.model_name || !r->cfg.model_name[0]) {
        const char *b = strrchr(cfg->model, '/');
        b = b && b[1] ? b + 1 : cfg->model;
        r->cfg.model_name = xstrdup(b); /* freed in router_free */
    } else {
        r->cfg.model_name = xstrdup(cfg->model_name);
    }
    r->started = (int64_t)time(NULL);
    r->base = event_base_new();
    r->reg = afd_metrics_init();
    int rc = r->base ? 0 : afd_errf(err, -ENOMEM, "event base");
    if (!rc)
        rc = load_model(r, err);
    if (!rc) {
        describe(r);
        rc = sla_init_checked(&cfg->sla, &r->sla, err);
    }
    if (!rc)
        rc = sla_metrics_register(r->sla, r->reg);
    if (!rc) {
        rh_config hc = {.addr = cfg->listen_addr, .port = cfg->port,
                        .tls_cert = cfg->tls_cert && cfg->tls_cert[0] ? cfg->tls_cert : NULL,
                        .tls_key = cfg->tls_key && cfg->tls_key[0] ? cfg->tls_key : NULL,
                        .keys_file = cfg->api_keys_file,
                        .cors_origins = (const char *const *)cfg->cors_origins,
                        .max_body_bytes = cfg->max_body,
                        .read_timeout_ms = cfg->read_timeout_ms,
                        .write_timeout_ms = cfg->write_timeout_ms,
                        .idle_timeout_ms = cfg->idle_timeout_ms,
                        .max_connections = cfg->max_connections,
                        .metrics = r->reg};
        r->http = rh_server_start(r->base, &hc, err);
        rc = r->http ? 0 : (err->code ? err->code : -EIO);
    }
    if (!rc)
        rc = serve_init(r, err);
    if (!rc)
        rc = pool_init(r, err);
    if (!rc) {
        afd_metrics_add_process(r->reg, AFD_VERSION);
        r->ev_term = evsignal_new(r->base, SIGTERM, on_signal, r);
        r->ev_int = evsignal_new(r->base, SIGINT, on_signal, r);
        r->ev_tick = event_new(r->base, -1, EV_PERSIST, on_tick, r);
        struct timeval tv = {0, 100000};
        evsignal_add(r->ev_term, NULL);
        evsignal_add(r->ev_int, NULL);
        event_add(r->ev_tick, &tv);
        /* the port file: "data_port" is HTTP, "admin_port" the control port (or 0) */
        rc = afd_port_file_write(cfg->port_file, rh_server_port(r->http),
                                 r->ctrl_port > 0 ? r->ctrl_port : 0, err);
    }
    if (rc && !err->msg[0])
        afd_errf(err, rc, "afd-router start-up: %s", afd_strerror(rc));
    if (rc) {
        router_free(r);
        return rc;
    }
    log_info("afd-router ready: model %s (%s), http%s://%s:%d, %d attnd(s) configured",
             r->cfg.model_name, cfg->model, cfg->tls_cert && cfg->tls_cert[0] ? "s" : "", cfg->listen_addr,
             rh_server_port(r->http), cfg->n_attnd);
    *out = r;
    return 0;
}

int router_run(router *r) {
    for (;;) {
        event_base_loop(r->base, 0);
        if (!r->draining)
            continue;
        if (rh_open_requests(r->http) == 0 || afd_now_ns() > r->drain_deadline_ns)
            break;
    }
    int left = rh_open_requests(r->http);
    log_info("afd-router drained %s", left ? "(deadline: open requests cut)" : "cleanly");
    return left ? -ETIMEDOUT : 0;
}

void router_free(router *r) {
    if (!r)
        return;
    if (r->http)
        serve_free(r);
    rh_server_free(r->http);
    if (r->base)
        event_base_loop(r->base, EVLOOP_NONBLOCK); /* lets libevent finish closing buffers */
    pool_free(r);
    if (r->ev_term)
        event_free(r->ev_term);
    if (r->ev_int)
        event_free(r->ev_int);
    if (r->ev_tick)
        event_free(r->ev_tick);
    sla_free(r->sla);
    tok_state_free(r->tst);
    free(r->detok_buf);
    tok_free(r->tok);
    afd_metrics_free(r->reg);
    if (r->base)
        event_base_free(r->base);
    free(r->cfg.model_name);
    free(r);
}
