/* notify: the messages a fake service manager receives on its NOTIFY_SOCKET, the watchdog
 * rate limit, no-ops without systemd, and no crash or block on a dead or full socket.
 * Criterion runs each test in its own process, so each reads its own environment. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/notify.h"

static char dir[64];
static char path[96];
static int lfd = -1;

/* A datagram socket in a fresh temp dir, like the one systemd passes in NOTIFY_SOCKET. */
static void listener_open(void) {
    snprintf(dir, sizeof dir, "/tmp/afd-notify-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/notify", dir);
    lfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(lfd, 0, "socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    setenv("NOTIFY_SOCKET", path, 1);
}

static void listener_close(void) {
    if (lfd >= 0)
        close(lfd);
    lfd = -1;
    unlink(path);
    rmdir(dir);
}

/* Receives one datagram within timeout_ms into buf; returns its length, -1 on timeout. The
 * sender's pid (from SCM_CREDENTIALS) goes to *pid when pid != NULL. */
static int recv_msg(char *buf, size_t cap, int timeout_ms, pid_t *pid) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    char ctl[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                        .msg_controllen = sizeof ctl};
    ssize_t n = recvmsg(lfd, &mh, 0);
    cr_assert_geq(n, 0, "recvmsg: %s", strerror(errno));
    buf[n] = '\0';
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (pid && c && c->cmsg_type == SCM_CREDENTIALS) {
        struct ucred uc;
        memcpy(&uc, CMSG_DATA(c), sizeof uc);
        *pid = uc.pid;
    }
    return (int)n;
}

static void expect_msg(const char *want) {
    char buf[1024];
    int n = recv_msg(buf, sizeof buf, 2000, NULL);
    cr_assert_geq(n, 0, "no datagram within 2 s (wanted \"%s\")", want);
    cr_assert_str_eq(buf, want);
}

static void set_watchdog(const char *usec, long pid) {
    char p[32];
    snprintf(p, sizeof p, "%ld", pid);
    setenv("WATCHDOG_USEC", usec, 1);
    setenv("WATCHDOG_PID", p, 1);
}

Test(notify, ready_with_status_from_this_pid, .init = listener_open, .fini = listener_close) {
    cr_assert_eq(afd_notify_init(), 1);
    cr_assert_eq(afd_notify_ready("weights loaded; ffn 2/2 connected"), 1);
    char buf[1024];
    pid_t pid = 0;
    cr_assert_gt(recv_msg(buf, sizeof buf, 2000, &pid), 0, "no READY datagram");
    cr_assert_str_eq(buf, "READY=1\nSTATUS=weights loaded; ffn 2/2 connected");
    /* Sent by the notifier thread, it still carries the process id (NotifyAccess=main). */
    cr_assert_eq(pid, getpid(), "sender pid %d, process %d", (int)pid, (int)getpid());
    cr_assert_eq(afd_notify_ready(NULL), 1);
    expect_msg("READY=1");
    cr_assert_eq(afd_notify_flush(1000), 0);
    cr_assert_eq(afd_notify_last_error(), 0, "%s", afd_strerror(afd_notify_last_error()));
}

Test(notify, order_kept_stopping_extend, .init = listener_open, .fini = listener_close) {
    cr_assert_eq(afd_notify_status("loading %d/%d", 3, 48), 1);
    cr_assert_eq(afd_notify_extend_timeout(120000000), 1);
    cr_assert_eq(afd_notify_ready("serving"), 1);
    cr_assert_eq(afd_notify_stopping(), 1);
    expect_msg("STATUS=loading 3/48");
    expect_msg("EXTEND_TIMEOUT_USEC=120000000");
    expect_msg("READY=1\nSTATUS=serving");
    expect_msg("STOPPING=1");
    cr_assert_eq(afd_notify_extend_timeout(0), -EINVAL);
}

Test(notify, status_is_one_line, .init = listener_open, .fini = listener_close) {
    /* A newline in the text must not smuggle a field (READY=1) into the message. */
    cr_assert_eq(afd_notify_status("peer says: %s", "x\nREADY=1\r\nMAINPID=1"), 1);
    expect_msg("STATUS=peer says: x READY=1  MAINPID=1");
}

Test(notify, long_status_cut_on_utf8_boundary, .init = listener_open, .fini = listener_close) {
    char text[2 * AFD_NOTIFY_STATUS_MAX];
    memset(text, 'a', sizeof text);
    /* "é" (2 bytes) straddling the cut: it must go whole */
    memcpy(text + AFD_NOTIFY_STATUS_MAX - 1, "\xc3\xa9", 2);
    text[sizeof text - 1] = '\0';
    cr_assert_eq(afd_notify_status("%s", text), 1);
    char buf[2048];
    int n = recv_msg(buf, sizeof buf, 2000, NULL);
    int want = (int)strlen("STATUS=") + AFD_NOTIFY_STATUS_MAX - 1;
    cr_assert_eq(n, want, "length %d, wanted %d", n, want);
    cr_assert_eq(strncmp(buf, "STATUS=aaa", 10), 0, "%.20s", buf);
    cr_assert_neq((unsigned char)buf[n - 1], 0xc3, "a cut UTF-8 sequence at the end");
}

Test(notify, unsent_statuses_merge, .init = listener_open, .fini = listener_close) {
    /* Many updates in a burst: at most a few reach the manager, the last one always does. */
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(afd_notify_status("step %d", i), 1);
    cr_assert_eq(afd_notify_flush(2000), 0);
    char buf[256], last[256] = "";
    int n = 0;
    while (recv_msg(buf, sizeof buf, 50, NULL) > 0) {
        snprintf(last, sizeof last, "%s", buf);
        n++;
    }
    cr_assert_str_eq(last, "STATUS=step 999");
    cr_assert_leq(n, 1000, "%d datagrams", n);
    cr_assert_geq(n, 1, "%d datagrams", n);
}

Test(notify, watchdog_interval_from_env, .init = listener_open, .fini = listener_close) {
    set_watchdog("2000000", (long)getpid());
    cr_assert_eq(afd_notify_watchdog_interval_ns(), 1000000000ull, "%llu",
                 (unsigned long long)afd_notify_watchdog_interval_ns());
}

Test(notify, watchdog_for_another_pid_is_off, .init = listener_open, .fini = listener_close) {
    set_watchdog("2000000", (long)getpid() + 1);
    cr_assert_eq(afd_notify_watchdog_interval_ns(), 0ull);
    cr_assert_eq(afd_notify_watchdog(), 0);
    char buf[64];
    cr_assert_lt(recv_msg(buf, sizeof buf, 100, NULL), 0, "unexpected \"%s\"", buf);
}

Test(notify, watchdog_off_without_usec, .init = listener_open, .fini = listener_close) {
    unsetenv("WATCHDOG_USEC");
    cr_assert_eq(afd_notify_watchdog_interval_ns(), 0ull);
    cr_assert_eq(afd_notify_watchdog(), 0);
}

Test(notify, watchdog_rate_limited, .init = listener_open, .fini = listener_close) {
    set_watchdog("400000", (long)getpid()); /* 400 ms: a ping at most every 100 ms */
    cr_assert_eq(afd_notify_watchdog_interval_ns(), 200000000ull);
    uint64_t t0 = afd_now_ns();
    cr_assert_eq(afd_notify_watchdog(), 1, "the first call must ping at once");
    cr_assert_eq(afd_notify_watchdog(), 0, "a second call right after must not");
    int queued = 1, calls = 2;
    while (afd_now_ns() - t0 < 550000000ull) { /* a busy loop, as a hot work loop would */
        queued += afd_notify_watchdog();
        calls++;
    }
    cr_assert_eq(afd_notify_flush(1000), 0);
    int got = 0;
    char buf[64];
    while (recv_msg(buf, sizeof buf, 50, NULL) > 0) {
        cr_assert_str_eq(buf, "WATCHDOG=1");
        got++;
    }
    /* pings at 0, 100, ..., 500 ms: 6 at most; fewer if this process lost the CPU a while */
    cr_assert(queued >= 3 && queued <= 6, "%d pings queued in %d calls", queued, calls);
    cr_assert_eq(got, queued, "received %d, queued %d", got, queued);
}

Test(notify, noop_without_notify_socket) {
    unsetenv("NOTIFY_SOCKET");
    set_watchdog("1000000", (long)getpid());
    cr_assert_eq(afd_notify_init(), 0);
    cr_assert_eq(afd_notify_ready("x"), 0);
    cr_assert_eq(afd_notify_status("y %d", 1), 0);
    cr_assert_eq(afd_notify_stopping(), 0);
    cr_assert_eq(afd_notify_extend_timeout(5), 0);
    cr_assert_eq(afd_notify_watchdog_interval_ns(), 0ull);
    cr_assert_eq(afd_notify_watchdog(), 0);
    cr_assert_eq(afd_notify_flush(10), 0);
    cr_assert_eq(afd_notify_last_error(), 0);
}

Test(notify, missing_socket_path_is_an_error_not_a_crash) {
    setenv("NOTIFY_SOCKET", "/nonexistent-afd-dir/notify", 1);
    set_watchdog("1000000", (long)getpid());
    cr_assert_eq(afd_notify_ready("x"), 1);
    cr_assert_eq(afd_notify_watchdog(), 1);
    cr_assert_eq(afd_notify_stopping(), 1);
    cr_assert_eq(afd_notify_flush(2000), 0);
    cr_assert_eq(afd_notify_last_error(), -ENOENT, "%s", afd_strerror(afd_notify_last_error()));
}

Test(notify, garbage_socket_name_is_an_error_not_a_crash) {
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    cr_assert_eq(afd_notify_ready("x"), 1);
    cr_assert_eq(afd_notify_flush(2000), 0);
    cr_assert_lt(afd_notify_last_error(), 0);
}

Test(notify, manager_not_reading_never_blocks, .init = listener_open, .fini = listener_close) {
    /* Nobody reads lfd: the kernel queue fills, sd_notify blocks inside the notifier thread,
     * then our queue fills; the callers must keep returning at once. */
    set_watchdog("1000000", (long)getpid());
    uint64_t t0 = afd_now_ns();
    int limited = 0;
    for (int i = 0; i < 3000; i++) {
        int rc = afd_notify_extend_timeout((uint64_t)i + 1);
        cr_assert(rc == 1 || rc == AFD_E_LIMIT, "rc %d", rc);
        limited += rc == AFD_E_LIMIT;
        afd_notify_status("step %d", i);
        afd_notify_watchdog();
    }
    uint64_t ms = (afd_now_ns() - t0) / 1000000;
    cr_assert_lt(ms, 1000ull, "3000 calls took %llu ms", (unsigned long long)ms);
    cr_assert_gt(limited, 0, "the queue never filled: is somebody reading?");
    cr_assert_eq(afd_notify_flush(100), AFD_E_AGAIN);
    t0 = afd_now_ns();
    afd_notify_ready("still here");
    afd_notify_stopping();
    cr_assert_lt((afd_now_ns() - t0) / 1000000, 100ull);
}
