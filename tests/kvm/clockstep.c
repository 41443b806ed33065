/*
 * clockstep: the KVM-HV harness's clock tool inside an emulated host.
 *
 *   clockstep serve PORT   answer each byte read from PORT (a virtio-serial
 *                          port) with one line: CLOCK_REALTIME in ns.
 *                          A resident process, so the harness's samples
 *                          carry no fork/exec latency.
 *   clockstep step NS      add NS (signed) to CLOCK_REALTIME.
 *
 * The harness samples the clock of each host against its own and steps
 * it by the difference (bounded by half the sample's round trip), which
 * is how two emulated hosts are put on one time base. Busybox here has
 * no ntpd.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int serve(const char *path)
{
    int fd = open(path, O_RDWR);
    char c, line[32];

    if (fd < 0) {
        perror(path);
        return 1;
    }
    while (read(fd, &c, 1) == 1) {
        int n = snprintf(line, sizeof(line), "%" PRId64 "\n", realtime_ns());

        if (write(fd, line, n) != n) {
            return 1;
        }
    }
    return 0;
}

static int step(const char *arg)
{
    int64_t delta = strtoll(arg, NULL, 10), t;
    struct timespec ts;

    t = realtime_ns() + delta;
    ts.tv_sec = t / 1000000000LL;
    ts.tv_nsec = t % 1000000000LL;
    if (clock_settime(CLOCK_REALTIME, &ts)) {
        perror("clock_settime");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        return serve(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "step") == 0) {
        return step(argv[2]);
    }
    fprintf(stderr, "usage: clockstep serve PORT | step NS\n");
    return 2;
}
