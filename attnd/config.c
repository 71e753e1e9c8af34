/* config.c: attnd's settings, one table (file keys, flags, --help, effective-config log). */
#include <stddef.h>

#include "attnd/attnd.h"

static const char *const roles[] = {"both", "decode", "prefill", NULL};
static const char *const kv_dtypes[] = {"bf16", "fp8", NULL};
static const char *const f2a_names[] = {"bf16", "fp8", "f32", NULL};
static const char *const err_modes[] = {"none", "peer", NULL};
static const char *const handoffs[] = {"auto", "rma", "am", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

#define O(f) offsetof(attnd_cfg, f)
static const conf_opt opts[] = {
    {.name = "model", CONF_STR, O(model), 0, 0, NULL,
     "checkpoint directory (config.json + safetensors)", .flags = CONF_REQUIRED},
    {.name = "role", CONF_ENUM, O(role), 0, 0, "both",
     "both (local chunked prefill, and either end of a handoff), decode (prompts by KV "
     "handoff only) or prefill (prefill and hand K/V to a decode instance)",
     .choices = roles},
    {.name = "listen_addr", CONF_STR, O(listen_addr), 0, 0, "127.0.0.1",
     "control-plane (UCX) address the router connects to"},
    {.name = "listen_port", CONF_INT, O(listen_port), 0, 65535, "7800", "control port (0: any)"},
    {.name = "admin_addr", CONF_STR, O(admin_addr), 0, 0, "127.0.0.1",
     "address of /metrics, /health, /ready"},
    {.name = "admin_port", CONF_INT, O(admin_port), 0, 65535, "7900", "admin HTTP port (0: any)"},
    {.name = "port_file", CONF_STR, O(port_file), 0, 0, "",
     "write {\"data_port\",\"admin_port\",\"pid\"} here once listening (for scripts)"},
    {.name = "instance_id", CONF_I64, O(instance_id), 0, 4294967295.0, "1",
     "this instance's id on the wire"},
    {.name = "ffn", CONF_STRLIST, O(ffn), 0, 0, NULL,
     "the FFN group's shards, host:port, shard i = (ep i / tp_size, tp i % tp_size)",
     .count_offset = O(n_ffn), .flags = CONF_REQUIRED},
    {.name = "ffn_ep_size", CONF_INT, O(ffn_ep_size), 1, 4096, "1", "EP shards in the group"},
    {.name = "ffn_tp_size", CONF_INT, O(ffn_tp_size), 1, 4096, "1", "TP shards in the group"},
    {.name = "micro_batches", CONF_INT, O(micro_batches), 1, 8, "3",
     "micro-batches in flight per step (the pipeline depth)"},
    {.name = "max_seqs", CONF_INT, O(max_seqs), 1, 65536, "64", "running sequences at most"},
    {.name = "max_batch_tokens", CONF_INT, O(max_batch_tokens), 1, 1 << 20, "256",
     "tokens per step (decode tokens plus prefill chunks)"},
    {.name = "prefill_chunk", CONF_INT, O(prefill_chunk), 1, 1 << 20, "128",
     "prompt tokens of one sequence per step at most"},
    {.name = "kv_mem", CONF_SIZE, O(kv_mem), 1 << 20, 1e15, "1gb", "KV cache memory"},
    {.name = "kv_dtype", CONF_ENUM, O(kv_dtype), 0, 0, "bf16", "KV cache dtype",
     .choices = kv_dtypes},
    {.name = "block_size", CONF_INT, O(block_size), 1, 1024, "16", "KV positions per block"},
    {.name = "f2a_dtype", CONF_ENUM, O(f2a_dtype), 0, 0, "bf16",
     "dtype of the FFN partial sums (must match the FFN group)", .choices = f2a_names},
    {.name = "err_mode", CONF_ENUM, O(err_mode), 0, 0, "none",
     "UCX error handling: none (shared memory possible) or peer (TCP only)",
     .choices = err_modes},
    {.name = "heartbeat_ms", CONF_MS, O(heartbeat_ms), 10, 600000, "500",
     "heartbeat to a peer idle this long"},
    {.name = "peer_timeout_ms", CONF_MS, O(peer_timeout_ms), 50, 3600000, "3000",
     "a peer silent this long is dropped"},
    {.name = "drain_timeout_ms", CONF_MS, O(drain_timeout_ms), 0, 3600000, "30000",
     "on SIGTERM: time the running sequences get to finish"},
    {.name = "lease_ms", CONF_MS, O(lease_ms), 10, 3600000, "10000",
     "KV reservation lease (decode side): a RESERVE not completed by KV_READY within this is "
     "released; also the cap on what a RESERVE may ask"},
    {.name = "lease_grace_ms", CONF_MS, O(lease_grace_ms), 0, 3600000, "2000",
     "blocks of a released or expired reservation stay out of use this long (a late RMA "
     "write from a slow prefill instance lands in them, not in another sequence)"},
    {.name = "handoff", CONF_ENUM, O(handoff), 0, 0, "auto",
     "K/V transfer: auto (RMA put when offered, else KV_DATA frames), rma, am (frames only)",
     .choices = handoffs},
    {.name = "kv_checksum", CONF_BOOL, O(kv_checksum), 0, 0, "true",
     "checksum handed-off K/V (FNV-1a; the decode side verifies before decoding)"},
    {.name = "advertise_addr", CONF_STR, O(advertise_addr), 0, 0, "",
     "data-plane host routers and prefill instances dial (default: listen_addr)"},
    {.name = "routers", CONF_STRLIST, O(routers), 0, 0, NULL,
     "routers to register with (their ctrl_port, host:port): the instance joins their pool by "
     "itself and rejoins after a restart of either side",
     .count_offset = O(n_routers)},
    {.name = "threads", CONF_INT, O(threads), 0, 1024, "0",
     "compute threads (0: every online CPU)"},
    {.name = "isa", CONF_STR, O(isa), 0, 0, "auto",
     "CPU kernels: auto, avx512vbmi, avx512, avx2, generic"},
    {.name = "log_level", CONF_ENUM, O(log_level), 0, 0, "info", "log level",
     .choices = log_levels},
    {.name = "log_json", CONF_BOOL, O(log_json), 0, 0, "true", "JSON lines (false: plain text)"},
};
#undef O

const conf_table attnd_conf = {
    .prog = "attnd",
    .summary = "the attention daemon of afd: attention and KV cache, FFN over UCX, continuous "
               "batching",
    .usage_examples =
        "  attnd --model build/models/tiny --ffn 127.0.0.1:7600 --listen-port 7800\n"
        "  attnd --config /etc/afd/attnd-0.json\n"
        "  attnd --model DIR --ffn h1:7600,h2:7600 --ffn-ep-size 2 --micro-batches 3\n"
        "  curl -s 127.0.0.1:7900/metrics | grep afd_attnd_",
    .opts = opts,
    .n_opts = (int)(sizeof opts / sizeof opts[0]),
};
