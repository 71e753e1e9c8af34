/* afdctl: look at and change a running afd cluster (docs/operations.md "Scaling").
 *
 *   afdctl [--router URL] [--api-key KEY] [--json] list
 *   afdctl add HOST:PORT                      dial an attnd (its control port) into the pool
 *   afdctl drain ID|HOST:PORT [--deadline-ms N]   no new sequences; it finishes them and exits
 *   afdctl remove ID|HOST:PORT                forget an instance (no redial)
 *   afdctl ffn-move --attnd ADMIN,... --ffn H:P,... [--ep-size E] [--tp-size T]
 *                                             move attnds to another FFN group (shard map)
 *   afdctl attnd-drain ADMIN [--deadline-ms N]    drain one attnd through its admin port
 *
 * The router commands go to the router's HTTP API (the /admin routes, the API key when it has keys:
 * --api-key, or AFD_API_KEY / OPENAI_API_KEY); ffn-move and attnd-drain go to each attnd's
 * admin port (host:port). Plain HTTP only. Exit status: 0 done, 1 refused or unreachable,
 * 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct opts {
    const char *router, *api_key, *attnd, *ffn;
    int json, ep_size, tp_size;
    long long deadline_ms;
} opts;

static int usage(FILE *f) {
    fputs("usage: afdctl [--router URL] [--api-key KEY] [--json] COMMAND ...\n"
          "  list                                   the pool: instances, roles, load\n"
          "  add HOST:PORT                          dial an attnd's control port into the pool\n"
          "  drain ID|HOST:PORT [--deadline-ms N]   stop new work; it finishes and exits\n"
          "  remove ID|HOST:PORT                    forget an instance (no redial)\n"
          "  ffn-move --attnd ADMIN[,ADMIN..] --ffn H:P[,H:P..] [--ep-size E] [--tp-size T]\n"
          "                                         move attnds to another FFN group\n"
          "  attnd-drain ADMIN [--deadline-ms N]    drain an attnd through its admin port\n"
          "--router defaults to $AFD_ROUTER or http://127.0.0.1:8000; ADMIN is an attnd's\n"
          "admin host:port.\n",
          f);
    return 2;
}

/* host and port of "http://host:port[/...]" or "host:port". */
static int split_url(const char *url, char *host, size_t hn, char *port, size_t pn) {
    if (!strncmp(url, "https://", 8)) {
        fprintf(stderr, "afdctl: https is not supported (use the router's plain port)\n");
        return -1;
    }
    if (!strncmp(url, "http://", 7))
        url += 7;
    const char *colon = strrchr(url, ':'), *slash = strchr(url, '/');
    if (!colon || (slash && slash < colon) || (size_t)(colon - url) >= hn) {
        fprintf(stderr, "afdctl: '%s' is not host:port\n", url);
        return -1;
    }
    snprintf(host, hn, "%.*s", (int)(colon - url), url);
    snprintf(port, pn, "%.*s", slash ? (int)(slash - colon - 1) : (int)strlen(colon + 1),
             colon + 1);
    return 0;
}

/* One HTTP/1.1 request (Connection: close). Returns the status (and *body, malloc'd), or -1. */
static int http(const char *base, const char *method, const char *path, const char *key,
                const char *body, char **out) {
    char host[256], port[16];
    *out = NULL;
    if (split_url(base, host, sizeof host, port, sizeof port))
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "afdctl: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        struct timeval tv = {30, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "afdctl: cannot connect to %s:%s: %s\n", host, port, strerror(errno));
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
                     "User-Agent: afdctl\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s%s\r\n",
                     method, path, host, port, blen, key ? "Authorization: Bearer " : "",
                     key ? key : "", key ? "\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof head || write(fd, head, (size_t)n) != n ||
        (blen && write(fd, body, blen) != (ssize_t)blen)) {
        fprintf(stderr, "afdctl: sending to %s:%s failed\n", host, port);
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (ssize_t r; buf && (r = read(fd, buf + len, cap - 1 - len)) > 0;) {
        len += (size_t)r;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = 0;
    int status = -1;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !sep) {
        fprintf(stderr, "afdctl: %s:%s sent no HTTP answer\n", host, port);
        free(buf);
        return -1;
    }
    *out = strdup(sep + 4);
    free(buf);
    return status;
}

static int show(int status, char *body, const char *what) {
    if (status < 0)
        return 1;
    if (status >= 300) {
        json_error_t je;
        json_t *j = json_loads(body ? body : "", 0, &je);
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        if (!msg)
            msg = json_string_value(json_object_get(j, "error"));
        fprintf(stderr, "afdctl: %s: HTTP %d: %s\n", what, status, msg ? msg : body ? body : "");
        json_decref(j);
        free(body);
        return 1;
    }
    printf("%s: ok\n", what);
    free(body);
    return 0;
}

static int cmd_list(const opts *o) {
    char *body;
    int st = http(o->router, "GET", "/admin/instances", o->api_key, NULL, &body);
    if (st != 200)
        return show(st < 0 ? -1 : st, body, "list");
    if (o->json) {
        printf("%s\n", body);
        free(body);
        return 0;
    }
    json_error_t je;
    json_t *arr = json_loads(body, 0, &je);
    free(body);
    printf("%-8s %-22s %-8s %-11s %7s %7s %13s %9s %9s\n", "ID", "ADDRESS", "ROLE", "STATE",
           "RUNNING", "WAITING", "KV FREE", "STEP P50", "STEP P99");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        json_t *l = json_object_get(v, "load");
        char id[16] = "-", kv[32] = "-", p50[16] = "-", p99[16] = "-", run[16] = "-",
             wait[16] = "-";
        if (json_object_get(v, "instance_id"))
            snprintf(id, sizeof id, "%lld", json_integer_value(json_object_get(v, "instance_id")));
        if (l) {
            snprintf(kv, sizeof kv, "%lld/%lld",
                     json_integer_value(json_object_get(l, "kv_blocks_free")),
                     json_integer_value(json_object_get(v, "kv_blocks")));
            snprintf(p50, sizeof p50, "%.1fms",
                     json_integer_value(json_object_get(l, "p50_step_us")) / 1e3);
            snprintf(p99, sizeof p99, "%.1fms",
                     json_integer_value(json_object_get(l, "p99_step_us")) / 1e3);
            snprintf(run, sizeof run, "%lld", json_integer_value(json_object_get(l, "running")));
            snprintf(wait, sizeof wait, "%lld", json_integer_value(json_object_get(l, "waiting")));
        }
        const char *role = json_string_value(json_object_get(v, "role"));
        printf("%-8s %-22s %-8s %-11s %7s %7s %13s %9s %9s\n", id,
               json_string_value(json_object_get(v, "addr")), role ? role : "-",
               json_string_value(json_object_get(v, "state")), run, wait, kv, p50, p99);
    }
    json_decref(arr);
    return 0;
}

/* {"instance_id": N} or {"addr": "..."} from a command-line word. */
static json_t *target(const char *w) {
    char *end;
    long long id = strtoll(w, &end, 10);
    if (*w && !*end && id >= 0)
        return json_pack("{s:I}", "instance_id", (json_int_t)id);
    return json_pack("{s:s}", "addr", w);
}

static int post(const opts *o, const char *base, const char *path, const char *key, json_t *j,
                const char *what) {
    char *text = json_dumps(j, JSON_COMPACT), *body;
    json_decref(j);
    int st = http(base, "POST", path, key, text, &body);
    free(text);
    return show(st, body, what);
}

int main(int argc, char **argv) {
    opts o = {.router = getenv("AFD_ROUTER"), .api_key = getenv("AFD_API_KEY"), .ep_size = 0,
              .tp_size = 1, .deadline_ms = -1};
    if (!o.router)
        o.router = "http://127.0.0.1:8000";
    if (!o.api_key)
        o.api_key = getenv("OPENAI_API_KEY");
    static const struct option lo[] = {
        {"router", 1, 0, 'r'},   {"api-key", 1, 0, 'k'}, {"json", 0, 0, 'j'},
        {"attnd", 1, 0, 'a'},    {"ffn", 1, 0, 'f'},     {"ep-size", 1, 0, 'e'},
        {"tp-size", 1, 0, 't'},  {"deadline-ms", 1, 0, 'd'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "+h", lo, NULL)) != -1;) {
        switch (c) {
        case 'r': o.router = optarg; break;
        case 'k': o.api_key = optarg; break;
        case 'j': o.json = 1; break;
        case 'a': o.attnd = optarg; break;
        case 'f': o.ffn = optarg; break;
        case 'e': o.ep_size = atoi(optarg); break;
        case 't': o.tp_size = atoi(optarg); break;
        case 'd': o.deadline_ms = atoll(optarg); break;
        case 'h': usage(stdout); return 0;
        default: return usage(stderr);
        }
    }
    /* options may also follow the command */
    int nargs = argc - optind;
    char **args = argv + optind;
    optind = 1;
    if (nargs > 1)
        for (int c; (c = getopt_long(nargs, args, "+h", lo, NULL)) != -1;) {
            switch (c) {
            case 'a': o.attnd = optarg; break;
            case 'f': o.ffn = optarg; break;
            case 'e': o.ep_size = atoi(optarg); break;
            case 't': o.tp_size = atoi(optarg); break;
            case 'd': o.deadline_ms = atoll(optarg); break;
            case 'j': o.json = 1; break;
            default: return usage(stderr);
            }
        }
    const char *cmd = nargs ? args[0] : NULL, *arg = optind < nargs ? args[optind] : NULL;
    if (!cmd)
        return usage(stderr);
    if (!strcmp(cmd, "list"))
        return cmd_list(&o);
    if (!strcmp(cmd, "add") && arg)
        return post(&o, o.router, "/admin/instances", o.api_key, json_pack("{s:s}", "addr", arg),
                    "add");
    if (!strcmp(cmd, "drain") && arg) {
        json_t *j = target(arg);
        if (o.deadline_ms >= 0)
            json_object_set_new(j, "deadline_ms", json_integer(o.deadline_ms));
        return post(&o, o.router, "/admin/drain", o.api_key, j, "drain");
    }
    if (!strcmp(cmd, "remove") && arg)
        return post(&o, o.router, "/admin/remove", o.api_key, target(arg), "remove");
    if (!strcmp(cmd, "attnd-drain") && arg) {
        json_t *j = json_object();
        if (o.deadline_ms >= 0)
            json_object_set_new(j, "deadline_ms", json_integer(o.deadline_ms));
        return post(&o, arg, "/admin/drain", NULL, j, "attnd-drain");
    }
    if (!strcmp(cmd, "ffn-move") && o.attnd && o.ffn) {
        json_t *shards = json_array();
        char *list = strdup(o.ffn), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(shards, json_string(t));
        free(list);
        int n = (int)json_array_size(shards);
        int ep = o.ep_size ? o.ep_size : n / (o.tp_size > 0 ? o.tp_size : 1);
        int rc = 0;
        char *alist = strdup(o.attnd);
        save = NULL;
        for (char *a = strtok_r(alist, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
            json_t *j = json_pack("{s:O, s:i, s:i}", "ffn", shards, "ep_size", ep, "tp_size",
                                  o.tp_size);
            char what[300];
            snprintf(what, sizeof what, "ffn-move %s", a);
            rc |= post(&o, a, "/admin/ffn", NULL, j, what);
        }
        free(alist);
        json_decref(shards);
        return rc ? 1 : 0;
    }
    return usage(stderr);
}
