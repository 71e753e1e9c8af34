/* ffnd_proc.h: start and stop ffnd processes from tests (the test binary's own process:
 * Criterion runs each test in a fork, so the bookkeeping is per test). */
#ifndef AFD_TEST_FFND_PROC_H
#define AFD_TEST_FFND_PROC_H

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/clock.h"

static inline const char *fp_build(void) {
    const char *b = getenv("AFD_BUILD");
    return b && *b ? b : "build";
}

typedef struct fproc {
    pid_t pid;
    int data_port, admin_port;
    char port_file[300];
} fproc;

/* Daemons log warnings only, unless AFD_TEST_LOG_LEVEL says otherwise (debugging). */
static inline const char *fp_log_level(void) {
    const char *l = getenv("AFD_TEST_LOG_LEVEL");
    return l && *l ? l : "warn";
}

/* Every ffnd a test started: fp_kill_all (teardown) kills them even when an assertion ended
 * the test early, and each dies with the test process anyway (PR_SET_PDEATHSIG). */
static pid_t fp_started[8];
static int fp_n_started;

static inline void fp_kill_all(void) {
    for (int i = 0; i < fp_n_started; i++)
        if (fp_started[i] > 0 && kill(fp_started[i], SIGKILL) == 0)
            waitpid(fp_started[i], NULL, 0);
    fp_n_started = 0;
}

/* Starts ffnd with extra "--flag value" pairs (NULL-terminated); waits for its port file. */
/* Starts BUILD/bin/<name> (ffnd, attnd: the same port/timeout flags) and waits for its port
 * file. */
static inline void fp_start_bin(fproc *d, const char *name, const char *model_dir,
                                const char *peer_timeout_arg, const char *const *extra) {
    char bin[300];
    snprintf(bin, sizeof bin, "%s/bin/%s", fp_build(), name);
    snprintf(d->port_file, sizeof d->port_file, "%s/../ffnd-%d.ports", model_dir, rand());
    /* slow runs (valgrind) stretch every daemon's peer timeout */
    const char *pt_env = getenv("AFD_TEST_PEER_TIMEOUT_MS");
    if (pt_env && *pt_env)
        peer_timeout_arg = pt_env;
    const char *argv[64] = {bin, "--model", model_dir, "--listen-port", "0", "--admin-port",
                            "0", "--port-file", d->port_file, "--threads", "1",
                            "--log-level", fp_log_level(), "--peer-timeout-ms", peer_timeout_arg,
                            "--heartbeat-ms", "200"};
    int n = 17;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    d->pid = fork();
    cr_assert_geq(d->pid, 0, "fork");
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    if (fp_n_started < 8)
        fp_started[fp_n_started++] = d->pid;
    int64_t deadline = (int64_t)afd_now_ns() + 30000000000ll;
    for (;;) {
        FILE *f = fopen(d->port_file, "r");
        if (f) {
            int ok = fscanf(f, "{\"data_port\": %d, \"admin_port\": %d", &d->data_port,
                            &d->admin_port);
            fclose(f);
            if (ok == 2)
                return;
        }
        int st;
        cr_assert_eq(waitpid(d->pid, &st, WNOHANG), 0, "%s exited during start-up", name);
        cr_assert_lt((int64_t)afd_now_ns(), deadline, "%s did not start within 30 s", name);
        usleep(20000);
    }
}

static inline void fp_start(fproc *d, const char *model_dir, const char *peer_timeout_arg,
                            const char *const *extra) {
    fp_start_bin(d, "ffnd", model_dir, peer_timeout_arg, extra);
}

/* SIGTERM, then the exit status (SIGKILL after 10 s: a failure). */
static inline int fp_stop(fproc *d) {
    kill(d->pid, SIGTERM);
    int64_t deadline = (int64_t)afd_now_ns() + 10000000000ll;
    int st = 0;
    while (waitpid(d->pid, &st, WNOHANG) == 0) {
        if ((int64_t)afd_now_ns() > deadline) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &st, 0);
            cr_assert_fail("pid %d did not drain within 10 s of SIGTERM", (int)d->pid);
        }
        usleep(10000);
    }
    unlink(d->port_file);
    for (int i = 0; i < fp_n_started; i++)
        if (fp_started[i] == d->pid)
            fp_started[i] = 0;
    cr_assert(WIFEXITED(st), "ffnd died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return WEXITSTATUS(st);
}

#endif
