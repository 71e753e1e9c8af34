#include "common/base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int afd_log_level = AFD_LOG_INFO;
static int log_format = AFD_LOG_JSON;
static char log_proc[32] = "afd";
static _Thread_local char log_req[64];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int afd_log_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void afd_log_init(const char *proc, int level, int format) {
    snprintf(log_proc, sizeof log_proc, "%s", proc ? proc : "afd");
    afd_log_level = level;
    log_format = format;
    int env_level = afd_log_level_parse(getenv("AFD_LOG_LEVEL"));
    if (env_level >= 0)
        afd_log_level = env_level;
    const char *env_format = getenv("AFD_LOG_FORMAT");
    if (env_format && strcmp(env_format, "text") == 0)
        log_format = AFD_LOG_TEXT;
    if (env_format && strcmp(env_format, "json") == 0)
        log_format = AFD_LOG_JSON;
}

void afd_log_set_req(const char *req_id) {
    snprintf(log_req, sizeof log_req, "%s", req_id ? req_id : "");
}

size_t afd_json_escape(char *dst, size_t cap, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (cap == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t len = 0;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, len = 2;
        } else if (c == '\n') {
            esc[0] = '\\', esc[1] = 'n', len = 2;
        } else if (c == '\t') {
            esc[0] = '\\', esc[1] = 't', len = 2;
        } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
            /* Non-ASCII bytes are escaped one by one: the log line stays valid JSON whatever
             * the bytes were (a hostile tensor name, a broken UTF-8 prompt). */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15], len = 6;
        } else {
            esc[0] = (char)c, len = 1;
        }
        if (n + len >= cap)
            break;
        memcpy(dst + n, esc, len);
        n += len;
    }
    dst[n] = '\0';
    return n;
}

void afd_log_emit(int level, const char *file, int line, const char *fmt, ...) {
    char msg[2048], esc[4096], out[4608];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[80];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (level < 0 || level > 3)
        level = AFD_LOG_ERROR;

    int n;
    if (log_format == AFD_LOG_TEXT) {
        n = snprintf(out, sizeof out, "%s %-5s %s: %s%s%s%s\n", ts, level_names[level], log_proc,
                     msg, log_req[0] ? " [req " : "", log_req, log_req[0] ? "]" : "");
    } else {
        afd_json_escape(esc, sizeof esc, msg);
        char req[160] = "";
        if (log_req[0]) {
            char req_esc[140];
            afd_json_escape(req_esc, sizeof req_esc, log_req);
            snprintf(req, sizeof req, ",\"req\":\"%s\"", req_esc);
        }
        n = snprintf(out, sizeof out,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"proc\":\"%s\",\"src\":\"%s:%d\",\"msg\":\"%s\"%s}\n",
                     ts, level_names[level], log_proc, base, line, esc, req);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof out) {
        n = sizeof out - 1;
        out[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, out, (size_t)n);
    (void)w;
}
