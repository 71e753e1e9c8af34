/* config.c: afd-router's settings, one table (file keys, flags, --help, effective-config log). */
#include <stddef.h>

#include "router/router.h"

static const char *const err_modes[] = {"none", "peer", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

#define O(f) offsetof(router_cfg, f)
static const conf_opt opts[] = {
    {.name = "model", CONF_STR, O(model), 0, 0, NULL,
     "checkpoint directory (config.json, tokenizer.json, tokenizer_config.json)",
     .flags = CONF_REQUIRED},
    {.name = "model_name", CONF_STR, O(model_name), 0, 0, "",
     "the model's name in the API (default: the directory's name)"},
    {.name = "listen_addr", CONF_STR, O(listen_addr), 0, 0, "127.0.0.1", "HTTP address"},
    {.name = "port", CONF_INT, O(port), 0, 65535, "8000", "HTTP port (0: any)"},
    {.name = "tls_cert", CONF_STR, O(tls_cert), 0, 0, "", "PEM certificate chain: HTTPS"},
    {.name = "tls_key", CONF_STR, O(tls_key), 0, 0, "", "PEM private key (with tls_cert)"},
    {.name = "api_keys_file", CONF_STR, O(api_keys_file), 0, 0, "",
     "API keys, one per line (# comments); empty: no authentication"},
    {.name = "cors_origins", CONF_STRLIST, O(cors_origins), 0, 0, NULL,
     "origins allowed by CORS (\"*\": any); empty: CORS off", .count_offset = O(n_cors_origins)},
    {.name = "max_body", CONF_SIZE, O(max_body), 1024, 1u << 30, "8mb",
     "request body limit (413 over it)"},
    {.name = "read_timeout_ms", CONF_MS, O(read_timeout_ms), 100, 3600000, "30s",
     "a request must arrive within this"},
    {.name = "write_timeout_ms", CONF_MS, O(write_timeout_ms), 100, 3600000, "30s",
     "a client that reads nothing for this long is cut"},
    {.name = "idle_timeout_ms", CONF_MS, O(idle_timeout_ms), 100, 3600000, "60s",
     "idle keep-alive connections close after this"},
    {.name = "max_connections", CONF_INT, O(max_connections), 1, 1 << 20, "1024",
     "HTTP connections at most"},
    {.name = "attnd", CONF_STRLIST, O(attnd), 0, 0, NULL,
     "attnd control addresses (host:port) to connect to", .count_offset = O(n_attnd)},
    {.name = "ctrl_addr", CONF_STR, O(ctrl_addr), 0, 0, "127.0.0.1",
     "control address attnds register at (live registration)"},
    {.name = "ctrl_port", CONF_INT, O(ctrl_port), -1, 65535, "-1",
     "control port attnds register at (their `routers` setting); -1: none, 0: any"},
    {.name = "reconnect_ms", CONF_MS, O(reconnect_ms), 50, 3600000, "1s",
     "redial a configured attnd that is down this often"},
    {.name = "heartbeat_ms", CONF_MS, O(heartbeat_ms), 10, 600000, "500",
     "heartbeat to an idle attnd"},
    {.name = "peer_timeout_ms", CONF_MS, O(peer_timeout_ms), 50, 3600000, "3000",
     "an attnd silent this long is dropped (its sequences fail)"},
    {.name = "err_mode", CONF_ENUM, O(err_mode), 0, 0, "none",
     "UCX error handling: none (shared memory possible) or peer (TCP only)",
     .choices = err_modes},
    {.name = "drain_timeout_ms", CONF_MS, O(drain_timeout_ms), 0, 3600000, "30s",
     "on SIGTERM: time open requests get to finish, then streams are cut"},
    {.name = "request_timeout_ms", CONF_MS, O(request_timeout_ms), 100, 86400000, "600s",
     "a request without progress (no token) this long fails with 504"},
    {.name = "max_n", CONF_INT, O(max_n), 1, 128, "16", "largest n (choices per prompt)"},
    {.name = "stream_buffer", CONF_SIZE, O(stream_buffer), 4096, 1u << 30, "4mb",
     "SSE bytes queued for a slow reader before the stream is cut (and cancelled)"},
    {.name = "escape_special", CONF_BOOL, O(escape_special), 0, 0, "true",
     "special tokens written in chat messages are plain text (no injection of <|EOT|> ...)"},
    SLA_CONF_OPTS(router_cfg, sla),
    {.name = "port_file", CONF_STR, O(port_file), 0, 0, "",
     "write {\"data_port\",\"admin_port\",\"pid\"} here once listening (for scripts)"},
    {.name = "log_level", CONF_ENUM, O(log_level), 0, 0, "info", "log level",
     .choices = log_levels},
    {.name = "log_json", CONF_BOOL, O(log_json), 0, 0, "true", "JSON lines (false: plain text)"},
};
#undef O

const conf_table router_conf = {
    .prog = "afd-router",
    .summary = "the OpenAI-compatible router of afd: HTTP API, tokenizer, prefill/decode "
               "handoff, TPOT SLA admission",
    .usage_examples =
        "  afd-router --model build/models/tiny --attnd 127.0.0.1:7800 --port 8000\n"
        "  afd-router --config /etc/afd/router.json\n"
        "  curl -s 127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        "       -d '{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'",
    .opts = opts,
    .n_opts = (int)(sizeof opts / sizeof opts[0]),
};
