/* log.h: levelled logging, one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-23T06:50:55.123Z","level":"info","proc":"attnd","msg":"...","req":"abc"}
 *
 * The level is checked before the arguments are evaluated. The request context ("req") is
 * per thread: afd_log_set_req() before handling a request, afd_log_set_req(NULL) after.
 * AFD_LOG_FORMAT=text (or afd_log_init(..., AFD_LOG_TEXT)) prints plain lines for humans; the
 * default is JSON. AFD_LOG_LEVEL=error|warn|info|debug overrides the level at init.
 * A message about a limit states the value and the limit. Thread-safe (one write() per line).
 */
#ifndef AFD_LOG_H
#define AFD_LOG_H

#include <stddef.h>

enum { AFD_LOG_ERROR = 0, AFD_LOG_WARN = 1, AFD_LOG_INFO = 2, AFD_LOG_DEBUG = 3 };
enum { AFD_LOG_JSON = 0, AFD_LOG_TEXT = 1 };

extern int afd_log_level;

void afd_log_init(const char *proc, int level, int format);
/* Parses "error|warn|info|debug"; returns the level or -1. */
int afd_log_level_parse(const char *s);
/* Request context of the calling thread; the string is copied (up to 63 bytes). */
void afd_log_set_req(const char *req_id);

void afd_log_emit(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define afd_log(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((lvl) <= afd_log_level)                                                                \
            afd_log_emit((lvl), __FILE__, __LINE__, __VA_ARGS__);                                  \
    } while (0)

#define log_error(...) afd_log(AFD_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  afd_log(AFD_LOG_WARN, __VA_ARGS__)
#define log_info(...)  afd_log(AFD_LOG_INFO, __VA_ARGS__)
#define log_debug(...) afd_log(AFD_LOG_DEBUG, __VA_ARGS__)

/* Appends s to dst (capacity cap) as JSON string contents, escaped; returns bytes written.
 * Always NUL-terminates when cap > 0. Invalid UTF-8 bytes become \u00XX escapes. */
size_t afd_json_escape(char *dst, size_t cap, const char *s);

#endif
