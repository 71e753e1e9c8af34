#include "common/base/progress.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/base/log.h"

#define BAR_WIDTH 24

static int pick_mode(uint64_t total_bytes, int flags) {
    const char *env = getenv("AFD_PROGRESS");
    if (flags & AFD_PROGRESS_QUIET) return AFD_PROGRESS_OFF;
    if (env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)) return AFD_PROGRESS_OFF;
    if (env && strcmp(env, "bar") == 0) return AFD_PROGRESS_MODE_BAR;
    if (env && strcmp(env, "log") == 0) return AFD_PROGRESS_MODE_LOG;
    if (total_bytes < AFD_PROGRESS_MIN_BYTES && !(flags & AFD_PROGRESS_FORCE))
        return AFD_PROGRESS_OFF;
    const char *fmt = getenv("AFD_LOG_FORMAT");
    bool json = fmt && strcmp(fmt, "json") == 0;
    if (!(flags & AFD_PROGRESS_LOG) && !json && isatty(STDERR_FILENO)) return AFD_PROGRESS_MODE_BAR;
    return AFD_PROGRESS_MODE_LOG;
}

void afd_progress_begin(afd_progress *p, const char *label, uint64_t total_bytes,
                        uint64_t total_items, int flags) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "progress");
    p->unit = "tensors";
    p->total_bytes = total_bytes;
    p->total_items = total_items;
    p->t0 = p->t_last = afd_now_s();
    p->mode = pick_mode(total_bytes, flags);
    p->interval = p->mode == AFD_PROGRESS_MODE_BAR ? 0.1 : 2.0;
}

/* "3.2 GB", "812 MB", "4 KB" (decimal units, as disk sizes are quoted). */
static void fmt_bytes(char *buf, size_t cap, double b) {
    if (b >= 1e9)
        snprintf(buf, cap, "%.1f GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(buf, cap, "%.0f MB", b / 1e6);
    else
        snprintf(buf, cap, "%.0f KB", b / 1e3);
}

static void fmt_rate(char *buf, size_t cap, double bps) {
    if (bps >= 1e9)
        snprintf(buf, cap, "%.1f GB/s", bps / 1e9);
    else
        snprintf(buf, cap, "%.0f MB/s", bps / 1e6);
}

const char *afd_progress_text(const afd_progress *p, double now, char *buf, size_t cap) {
    char done[32], total[32], rate[32], items[64] = "", left[32] = "";
    double el = now - p->t0, bps = el > 0 ? (double)p->bytes / el : 0;
    fmt_bytes(done, sizeof done, (double)p->bytes);
    fmt_bytes(total, sizeof total, (double)p->total_bytes);
    fmt_rate(rate, sizeof rate, bps);
    if (p->total_items)
        snprintf(items, sizeof items, ", %llu/%llu %s", (unsigned long long)p->items,
                 (unsigned long long)p->total_items, p->unit);
    if (p->total_bytes > p->bytes && bps > 0)
        snprintf(left, sizeof left, ", %.0f s left", (double)(p->total_bytes - p->bytes) / bps);
    double pct = p->total_bytes ? 100.0 * (double)p->bytes / (double)p->total_bytes : 100.0;
    snprintf(buf, cap, "%s / %s (%.0f%%)%s, %s%s", done, total, pct, items, rate, left);
    return buf;
}

static void draw_bar(const afd_progress *p, double now, bool final) {
    char text[256], bar[BAR_WIDTH + 1], line[512];
    int fill = p->total_bytes ? (int)((double)BAR_WIDTH * (double)p->bytes / (double)p->total_bytes)
                              : BAR_WIDTH;
    if (fill > BAR_WIDTH) fill = BAR_WIDTH;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
    bar[BAR_WIDTH] = '\0';
    afd_progress_text(p, now, text, sizeof text);
    /* \033[K clears what a longer previous line left behind */
    int n =
        snprintf(line, sizeof line, "\r%s [%s] %s\033[K%s", p->label, bar, text, final ? "\n" : "");
    if (n > 0) {
        ssize_t w =
            write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
}

void afd_progress_update(afd_progress *p, uint64_t bytes_done, uint64_t items_done) {
    p->bytes = bytes_done;
    p->items = items_done;
    if (p->mode == AFD_PROGRESS_OFF) return;
    double now = afd_now_s();
    if (now - p->t_last < p->interval) return;
    p->t_last = now;
    if (p->mode == AFD_PROGRESS_MODE_BAR) {
        draw_bar(p, now, false);
    } else {
        char text[256];
        log_info("%s: %s", p->label, afd_progress_text(p, now, text, sizeof text));
    }
}

void afd_progress_end(afd_progress *p) {
    if (p->mode == AFD_PROGRESS_OFF) return;
    double now = afd_now_s();
    if (p->mode == AFD_PROGRESS_MODE_BAR) {
        draw_bar(p, now, true);
    } else {
        char done[32], rate[32];
        double el = now - p->t0;
        fmt_bytes(done, sizeof done, (double)p->bytes);
        fmt_rate(rate, sizeof rate, el > 0 ? (double)p->bytes / el : 0);
        log_info("%s: done, %s, %llu %s in %.1f s (%s)", p->label, done,
                 (unsigned long long)p->items, p->unit, el, rate);
    }
    p->mode = AFD_PROGRESS_OFF; /* a second end() is a no-op */
}
