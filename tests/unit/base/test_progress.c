/* The progress reporter: mode choice, status text, and quiet defaults. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/log.h"
#include "common/base/progress.h"

Test(progress, small_totals_are_silent_unless_forced) {
    unsetenv("AFD_PROGRESS");
    afd_progress p;
    afd_progress_begin(&p, "load", 10u << 20, 5, 0);
    cr_assert_eq(p.mode, AFD_PROGRESS_OFF, "mode %d for 10 MiB", p.mode);
    afd_progress_update(&p, 1, 1);
    cr_assert_eq(p.bytes, 1u, "updates are recorded even when silent");
    afd_progress_end(&p);
    afd_progress_begin(&p, "load", 10u << 20, 5, AFD_PROGRESS_FORCE | AFD_PROGRESS_LOG);
    cr_assert_eq(p.mode, AFD_PROGRESS_MODE_LOG, "mode %d", p.mode);
    afd_log_level = AFD_LOG_WARN; /* keep the summary line out of the test output */
    afd_progress_end(&p);
    cr_assert_eq(p.mode, AFD_PROGRESS_OFF, "end() leaves the reporter off");
    afd_progress_begin(&p, "load", 1ull << 40, 5, AFD_PROGRESS_QUIET);
    cr_assert_eq(p.mode, AFD_PROGRESS_OFF);
}

Test(progress, environment_overrides) {
    afd_progress p;
    setenv("AFD_PROGRESS", "off", 1);
    afd_progress_begin(&p, "x", 1ull << 40, 0, AFD_PROGRESS_FORCE);
    cr_assert_eq(p.mode, AFD_PROGRESS_OFF);
    setenv("AFD_PROGRESS", "log", 1);
    afd_progress_begin(&p, "x", 1, 0, 0);
    cr_assert_eq(p.mode, AFD_PROGRESS_MODE_LOG);
    cr_assert_float_eq(p.interval, 2.0, 1e-9);
    setenv("AFD_PROGRESS", "bar", 1);
    afd_progress_begin(&p, "x", 1, 0, 0);
    cr_assert_eq(p.mode, AFD_PROGRESS_MODE_BAR);
    p.mode = AFD_PROGRESS_OFF; /* do not draw into the test's stderr */
    unsetenv("AFD_PROGRESS");
    setenv("AFD_LOG_FORMAT", "json", 1);
    afd_progress_begin(&p, "x", 1ull << 40, 0, 0);
    cr_assert_eq(p.mode, AFD_PROGRESS_MODE_LOG, "JSON logs never get a bar");
}

Test(progress, status_text) {
    afd_progress p;
    afd_progress_begin(&p, "loading m", 7900000000ull, 1517, AFD_PROGRESS_QUIET);
    p.bytes = 3200000000ull;
    p.items = 812;
    char buf[256];
    /* 3.2 GB in 2 s: 1.6 GB/s, 4.7 GB left: 3 s */
    afd_progress_text(&p, p.t0 + 2.0, buf, sizeof buf);
    cr_assert_str_eq(buf, "3.2 GB / 7.9 GB (41%), 812/1517 tensors, 1.6 GB/s, 3 s left");
    p.unit = "files";
    p.total_items = 0;
    p.bytes = 7900000000ull;
    afd_progress_text(&p, p.t0 + 4.0, buf, sizeof buf);
    cr_assert_str_eq(buf, "7.9 GB / 7.9 GB (100%), 2.0 GB/s");
    p.total_bytes = 300000000ull;
    p.bytes = 0;
    afd_progress_text(&p, p.t0, buf, sizeof buf);
    cr_assert_str_eq(buf, "0 KB / 300 MB (0%), 0 MB/s");
}

Test(progress, log_mode_runs) {
    unsetenv("AFD_PROGRESS");
    afd_progress p;
    afd_progress_begin(&p, "smoke", 1000, 2, AFD_PROGRESS_FORCE | AFD_PROGRESS_LOG);
    p.interval = 0;
    afd_progress_update(&p, 500, 1);
    afd_progress_update(&p, 1000, 2);
    cr_assert_eq(p.items, 2u);
    afd_progress_end(&p);
    afd_progress_end(&p);
    cr_assert_eq(p.mode, AFD_PROGRESS_OFF);
}
