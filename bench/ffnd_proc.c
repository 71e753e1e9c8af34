/* ffnd_proc.c: start and stop an ffnd process for a benchmark (link, decode). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/base/clock.h"

int bench_ffnd_start(const char *build, const char *model, const char *const *extra,
                     bench_ffnd *p) {
    char bin[600];
    snprintf(bin, sizeof bin, "%s/bin/ffnd", build);
    snprintf(p->port_file, sizeof p->port_file, "/tmp/afd-bench-ffnd-%d.ports", (int)getpid());
    unlink(p->port_file);
    const char *argv[40] = {bin, "--model", model, "--listen-port", "0", "--admin-port", "0",
                            "--port-file", p->port_file, "--threads", "1", "--log-level",
                            "warn"};
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    p->pid = fork();
    if (p->pid < 0)
        return -errno;
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int64_t deadline = (int64_t)afd_now_ns() + 60000000000ll;
    while ((int64_t)afd_now_ns() < deadline) {
        FILE *f = fopen(p->port_file, "r");
        int ok = f ? fscanf(f, "{\"data_port\": %d", &p->port) : 0;
        if (f)
            fclose(f);
        if (ok == 1)
            return 0;
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid)
            return -EIO;
        usleep(20000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    return -ETIMEDOUT;
}

void bench_ffnd_stop(bench_ffnd *p) {
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    unlink(p->port_file);
}
