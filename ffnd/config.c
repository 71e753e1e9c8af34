/* config.c: ffnd's settings, one table (file keys, flags, --help, effective-config log). */
#include <stddef.h>

#include "ffnd/ffnd.h"

static const char *const f2a_names[] = {"bf16", "fp8", "f32", NULL};
static const char *const err_modes[] = {"none", "peer", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

#define O(f) offsetof(ffnd_cfg, f)
static const conf_opt opts[] = {
    {.name = "model", CONF_STR, O(model), 0, 0, NULL, "checkpoint directory (config.json + safetensors)",
     .flags = CONF_REQUIRED},
    {.name = "listen_addr", CONF_STR, O(listen_addr), 0, 0, "127.0.0.1",
     "data-plane (UCX) address to listen on"},
    {.name = "listen_port", CONF_INT, O(listen_port), 0, 65535, "7600", "data-plane port (0: any)"},
    {.name = "admin_addr", CONF_STR, O(admin_addr), 0, 0, "127.0.0.1",
     "address of /metrics, /health, /ready"},
    {.name = "admin_port", CONF_INT, O(admin_port), 0, 65535, "7700", "admin HTTP port (0: any)"},
    {.name = "port_file", CONF_STR, O(port_file), 0, 0, "",
     "write {\"data_port\",\"admin_port\",\"pid\"} here once listening (for scripts)"},
    {.name = "instance_id", CONF_I64, O(instance_id), 0, 4294967295.0, "1",
     "this instance's id on the wire"},
    {.name = "ep_rank", CONF_INT, O(ep_rank), 0, 65535, "0", "expert-parallel rank of this shard"},
    {.name = "ep_size", CONF_INT, O(ep_size), 1, 65535, "1", "expert-parallel shards in the group"},
    {.name = "tp_rank", CONF_INT, O(tp_rank), 0, 65535, "0", "tensor-parallel rank of this shard"},
    {.name = "tp_size", CONF_INT, O(tp_size), 1, 65535, "1", "tensor-parallel shards in the group"},
    {.name = "max_tokens", CONF_INT, O(max_tokens), 1, 1 << 20, "1024",
     "rows of one coalesced FFN batch (also the largest micro-batch accepted)"},
    {.name = "max_requests", CONF_INT, O(max_requests), 1, 4096, "64",
     "micro-batches in one coalesced FFN batch"},
    {.name = "max_peers", CONF_INT, O(max_peers), 1, 4096, "256", "attnd peers served at once"},
    {.name = "batch_window_us", CONF_US, O(batch_window_us), 0, 1000000, "300",
     "how long a batch waits for more peers' micro-batches of the same layer; it runs at once "
     "when every peer has one in it"},
    {.name = "spin_us", CONF_INT, O(spin_us), 0, 1000000, "200",
     "busy-poll this long after the last frame before sleeping on the event fd"},
    {.name = "f2a_dtype", CONF_ENUM, O(f2a_dtype), 0, 0, "bf16", "dtype of the partial sums sent back",
     .choices = f2a_names},
    {.name = "fp8_group", CONF_INT, O(fp8_group), 0, 65536, "0",
     "elements per FP8 scale along hidden (0: one per token)"},
    {.name = "err_mode", CONF_ENUM, O(err_mode), 0, 0, "none",
     "UCX error handling: none (shared memory possible; peers watched by heartbeat) or peer "
     "(UCX error callbacks; TCP only)",
     .choices = err_modes},
    {.name = "heartbeat_ms", CONF_MS, O(heartbeat_ms), 10, 600000, "500",
     "heartbeat to a peer idle this long"},
    {.name = "peer_timeout_ms", CONF_MS, O(peer_timeout_ms), 50, 3600000, "3000",
     "a peer silent this long is dropped"},
    {.name = "drain_timeout_ms", CONF_MS, O(drain_timeout_ms), 0, 3600000, "10000",
     "on SIGTERM: time to finish the open batch and send its answers"},
    {.name = "threads", CONF_INT, O(threads), 0, 1024, "0", "compute threads (0: every online CPU)"},
    {.name = "isa", CONF_STR, O(isa), 0, 0, "auto", "CPU kernels: auto, avx512, avx2, generic"},
    {.name = "wire_only", CONF_BOOL, O(wire_only), 0, 0, "false",
     "benchmarks only: answer every A2F with an F2A of the right size without dequantizing, "
     "computing or encoding anything (afd-bench link times the wire and the daemons alone)"},
    {.name = "log_level", CONF_ENUM, O(log_level), 0, 0, "info", "log level", .choices = log_levels},
    {.name = "log_json", CONF_BOOL, O(log_json), 0, 0, "true", "JSON lines (false: plain text)"},
};
#undef O

const conf_table ffnd_conf = {
    .prog = "ffnd",
    .summary = "the MoE FFN daemon of afd: serves one shard of every layer's FFN to attnd peers",
    .usage_examples =
        "  ffnd --model build/models/tiny --listen-port 7600 --admin-port 7700\n"
        "  ffnd --config /etc/afd/ffnd-0.json\n"
        "  ffnd --model DIR --ep-rank 1 --ep-size 2 --listen-port 0 --port-file /run/ffnd1.ports\n"
        "  curl -s 127.0.0.1:7700/metrics | grep afd_ffnd_",
    .opts = opts,
    .n_opts = (int)(sizeof opts / sizeof opts[0]),
};
