/*
 * tbprobe: a guest-side timebase (TB) probe for POWER.
 *
 * Spins reading the TB with mftb and reports, over stdout (the guest
 * console), every backwards step and every forward jump between two
 * consecutive reads larger than a threshold, plus a periodic summary.
 * A live migration shows up as one jump whose size is the guest-visible
 * TB advance across the stop (0 when the TB is frozen).
 *
 * With -a it runs one pinned process per online CPU (and per CPU that
 * comes online later) and, in addition, a cross-CPU check: CPU 0
 * publishes its TB in shared memory and every other CPU verifies that
 * its own TB, read after seeing that value, is not smaller; CPU 0 does
 * the same with every other CPU's published TB (a TB that differs
 * between vCPUs, either way, fails this).
 *
 * With w=MS, sleeper processes (one per CPU with -a, else four) sleep
 * until deadlines MS milliseconds apart, phased evenly (absolute
 * clock_nanosleep), and report when they woke, in TB ticks:
 * a sleep whose deadline fell inside a migration stop must end as soon
 * as the guest runs again (the decrementer fires at resume), and a
 * vCPU that takes no timer interrupt never reports again.
 *
 * With m=MB, a dirtier process keeps rewriting an MB-megabyte buffer,
 * one word per 4 KiB page, each time reading the word first (a load
 * before the store, the access order that exposed TCG's radix C-bit
 * bug): every page must hold the previous pass's number, so a page
 * whose last write was lost by a migration (missed dirty tracking)
 * shows up as a "mem" line.
 *
 * With "idle", nothing spins: the probe sleeps an interval at a time
 * and reports the guest's decrementer interrupts (/proc/interrupts'
 * two LOC lines: those that ran a timer event, and the others, which
 * found nothing due). An idle guest whose decrementer is programmed
 * right takes few of either; one that is re-entered with its
 * decrementer already expired takes an "other" on every entry. The
 * sleepers of w=MS run beside it.
 *
 * Output lines (all start with "TBP"; fields are key=value, decimal):
 *   TBP start freq=HZ cpus=N interval_ms=I thresh_us=T
 *   TBP jump cpu=C seq=S from=TB0 to=TB1 gap=TICKS
 *   TBP back cpu=C from=TB0 to=TB1 step=TICKS
 *   TBP skew cpu=C ref=TBREF own=TBOWN behind=TICKS refcpu=R
 *   TBP cpuadd cpu=C          (a CPU came online: its spinner starts)
 *   TBP sum cpu=C seq=S tb=TB maxgap=TICKS back=N jumps=N skews=N
 *   TBP wake cpu=C seq=S start=TB0 due=TBDUE woke=TB1 late=TICKS
 *   TBP mem pass=P page=N found=F expected=E
 *   TBP memsum pass=P pages=N errors=N
 *   TBP idle seq=S tb=TB slept=TICKS timer_events=N timer_others=N
 *
 * Build: static, for ppc64le (tests/guest/Makefile rules in the top
 * Makefile). Options come from argv or from one comma-separated word,
 * e.g. "tbprobe i=200,t=20000,a" as passed through the kernel cmdline.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t read_tb(void)
{
#if defined(__powerpc64__)
    uint64_t tb;

    __asm__ __volatile__("mftb %0" : "=r"(tb) : : "memory");
    return tb;
#else
#error "tbprobe reads the POWER timebase and builds for powerpc64 only"
#endif
}

#define MAX_CPUS 64

struct shared {
    volatile uint64_t ref_tb;   /* last TB published by CPU 0 */
    volatile uint64_t ref_seq;  /* bumped after each publication */
    /* ... and by every other CPU, checked by CPU 0 the same way */
    volatile uint64_t cpu_tb[MAX_CPUS];
    volatile uint64_t cpu_seq[MAX_CPUS];
};

struct opts {
    unsigned interval_ms;       /* summary period, in TB time */
    unsigned thresh_us;         /* report jumps larger than this */
    int all_cpus;
    unsigned duration_s;        /* 0: run forever */
    unsigned sleep_ms;          /* 0: no sleeper */
    unsigned dirty_mb;          /* 0: no memory dirtier */
    int idle;                   /* sleep and count timer interrupts */
};

static uint64_t timebase_freq(void)
{
    char line[256];
    uint64_t freq = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");

    if (!f) {
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "timebase", 8) == 0) {
            char *colon = strchr(line, ':');

            if (colon) {
                freq = strtoull(colon + 1, NULL, 10);
                break;
            }
        }
    }
    fclose(f);
    return freq;
}

static void pin_to(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set)) {
        printf("TBP error cpu=%d pin failed\n", cpu);
    }
}

/*
 * A TB read after seeing another CPU's TB must not be smaller: with
 * the check both ways (CPU 0 against each CPU, each against CPU 0) a
 * vCPU whose TB is ahead of or behind the others shows up.
 */
static int check_skew(int cpu, volatile uint64_t *ref_tb, int ref_cpu)
{
    uint64_t ref, own;

    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ref = *ref_tb;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    own = read_tb();
    if ((int64_t)(own - ref) >= 0) {
        return 0;
    }
    printf("TBP skew cpu=%d ref=%" PRIu64 " own=%" PRIu64
           " behind=%" PRId64 " refcpu=%d\n",
           cpu, ref, own, (int64_t)(ref - own), ref_cpu);
    return 1;
}

static void run(int cpu, uint64_t freq, const struct opts *o,
                struct shared *sh)
{
    uint64_t interval = freq / 1000 * o->interval_ms;
    uint64_t thresh = freq / 1000000 * o->thresh_us;
    uint64_t stop_after = o->duration_s ? freq * o->duration_s : 0;
    uint64_t seq = 0, nback = 0, njump = 0, nskew = 0, maxgap = 0;
    uint64_t start, prev, next_sum, seen_seq = 0;
    uint64_t seen[MAX_CPUS] = { 0 };
    int i;

    if (o->all_cpus) {
        pin_to(cpu);
    }
    start = prev = read_tb();
    next_sum = start + interval;
    for (;;) {
        uint64_t now = read_tb();
        int64_t step = (int64_t)(now - prev);

        if (step < 0) {
            nback++;
            printf("TBP back cpu=%d from=%" PRIu64 " to=%" PRIu64
                   " step=%" PRId64 "\n", cpu, prev, now, step);
        } else {
            if ((uint64_t)step > maxgap) {
                maxgap = step;
            }
            if ((uint64_t)step > thresh) {
                njump++;
                printf("TBP jump cpu=%d seq=%" PRIu64 " from=%" PRIu64
                       " to=%" PRIu64 " gap=%" PRId64 "\n",
                       cpu, seq, prev, now, step);
            }
        }
        if (sh) {
            if (cpu == 0) {
                sh->ref_tb = now;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                sh->ref_seq++;
                for (i = 1; i < MAX_CPUS; i++) {
                    if (sh->cpu_seq[i] != seen[i]) {
                        seen[i] = sh->cpu_seq[i];
                        nskew += check_skew(cpu, &sh->cpu_tb[i], i);
                    }
                }
            } else {
                sh->cpu_tb[cpu] = now;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                sh->cpu_seq[cpu]++;
                if (sh->ref_seq != seen_seq) {
                    seen_seq = sh->ref_seq;
                    nskew += check_skew(cpu, &sh->ref_tb, 0);
                }
            }
        }
        if ((int64_t)(now - next_sum) >= 0) {
            printf("TBP sum cpu=%d seq=%" PRIu64 " tb=%" PRIu64
                   " maxgap=%" PRIu64 " back=%" PRIu64 " jumps=%" PRIu64
                   " skews=%" PRIu64 "\n",
                   cpu, seq, now, maxgap, nback, njump, nskew);
            fflush(stdout);
            seq++;
            maxgap = 0;
            next_sum = now + interval;
            if (stop_after && now - start >= stop_after) {
                return;
            }
        }
        prev = now;
    }
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * Sleep until absolute deadlines phase_ns past each multiple of the
 * period (absolute, so sleepers with different phases do not drift
 * into each other) and report each wake-up in TB ticks.
 */
static void sleeper(int cpu, int pin, uint64_t freq, const struct opts *o,
                    uint64_t phase_ns)
{
    uint64_t period_ns = (uint64_t)o->sleep_ms * 1000000ULL;
    uint64_t stop_after = o->duration_s ? freq * o->duration_s : 0;
    uint64_t first = read_tb(), seq;

    if (pin) {
        pin_to(cpu);
    }
    for (seq = 0;; seq++) {
        uint64_t now_ns = monotonic_ns(), start = read_tb();
        uint64_t deadline = (now_ns / period_ns + 1) * period_ns + phase_ns;
        uint64_t due = start + (uint64_t)((double)(deadline - now_ns) *
                                          freq / 1e9);
        struct timespec ts = {
            .tv_sec = deadline / 1000000000ULL,
            .tv_nsec = deadline % 1000000000ULL,
        };
        uint64_t woke;

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) {
            /* EINTR: no signal is expected, so just sleep again */
        }
        woke = read_tb();
        printf("TBP wake cpu=%d seq=%" PRIu64 " start=%" PRIu64
               " due=%" PRIu64 " woke=%" PRIu64 " late=%" PRId64 "\n",
               cpu, seq, start, due, woke, (int64_t)(woke - due));
        if (stop_after && woke - first >= stop_after) {
            return;
        }
    }
}

/* Sleeper number n of count, phased evenly over the period. */
static void spawn_sleeper(int cpu, int pin, uint64_t freq,
                          const struct opts *o, int n, int count)
{
    uint64_t phase_ns = (uint64_t)o->sleep_ms * 1000000ULL * n / count;

    if (o->sleep_ms && fork() == 0) {
        sleeper(cpu, pin, freq, o, phase_ns);
        _exit(0);
    }
}

/*
 * Rewrite one word per page, pass after pass: page i holds pass + i
 * after pass `pass`. Report any page that does not hold what the
 * previous pass wrote, and a summary every 16 passes.
 */
static void dirtier(const struct opts *o)
{
    size_t page = 4096, npages = (size_t)o->dirty_mb * 1024 * 1024 / page;
    volatile uint64_t *buf = mmap(NULL, npages * page,
                                  PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t pass, errors = 0;
    size_t i;

    if (buf == MAP_FAILED) {
        printf("TBP error dirtier mmap\n");
        return;
    }
    for (i = 0; i < npages; i++) {
        buf[i * page / sizeof(*buf)] = i;
    }
    for (pass = 1;; pass++) {
        for (i = 0; i < npages; i++) {
            volatile uint64_t *w = &buf[i * page / sizeof(*buf)];
            uint64_t found = *w;

            if (found != pass - 1 + i) {
                errors++;
                printf("TBP mem pass=%" PRIu64 " page=%zu found=%" PRIu64
                       " expected=%" PRIu64 "\n", pass, i, found,
                       pass - 1 + i);
            }
            *w = pass + i;
        }
        if (pass % 16 == 0) {
            printf("TBP memsum pass=%" PRIu64 " pages=%zu errors=%" PRIu64
                   "\n", pass, npages, errors);
        }
    }
}

/*
 * Sum, over CPUs, of the /proc/interrupts line whose description
 * contains `what` (e.g. "Local timer interrupts for others"); -1 if
 * there is none.
 */
static long long interrupts_line(const char *what)
{
    char line[8192];
    long long total = -1;
    FILE *f = fopen("/proc/interrupts", "r");

    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *desc = strstr(line, what);
        char *p, *end;

        if (!desc || !strchr(line, ':')) {
            continue;
        }
        total = 0;
        for (p = strchr(line, ':') + 1; p < desc; p = end) {
            long long n = strtoll(p, &end, 10);

            if (end == p) {
                break;
            }
            total += n;
        }
        break;
    }
    fclose(f);
    return total;
}

static void idle(uint64_t freq, const struct opts *o)
{
    uint64_t stop_after = o->duration_s ? freq * o->duration_s : 0;
    uint64_t first = read_tb(), prev = first, seq;
    struct timespec ts = {
        .tv_sec = o->interval_ms / 1000,
        .tv_nsec = (o->interval_ms % 1000) * 1000000L,
    };

    for (seq = 0;; seq++) {
        uint64_t now;

        nanosleep(&ts, NULL);
        now = read_tb();
        if ((int64_t)(now - prev) < 0) {
            printf("TBP back cpu=0 from=%" PRIu64 " to=%" PRIu64
                   " step=%" PRId64 "\n", prev, now, (int64_t)(now - prev));
        }
        printf("TBP idle seq=%" PRIu64 " tb=%" PRIu64 " slept=%" PRIu64
               " timer_events=%lld timer_others=%lld\n", seq, now,
               now - prev,
               interrupts_line("Local timer interrupts for timer event"),
               interrupts_line("Local timer interrupts for others"));
        prev = now;
        if (stop_after && now - first >= stop_after) {
            return;
        }
    }
}

/*
 * A CPU that comes online later (hot-plugged) gets a spinner too. CPUs
 * are taken to be numbered 0..N-1 (QEMU's pseries hot-plugs the next).
 */
static void watch_cpus(long ncpu, uint64_t freq, const struct opts *o,
                       struct shared *sh)
{
    for (;;) {
        long now = sysconf(_SC_NPROCESSORS_ONLN);

        for (; ncpu < now && ncpu < MAX_CPUS; ncpu++) {
            printf("TBP cpuadd cpu=%ld\n", ncpu);
            if (fork() == 0) {
                run(ncpu, freq, o, sh);
                _exit(0);
            }
        }
        usleep(200000);
    }
}

static void parse_word(struct opts *o, char *word)
{
    char *tok, *save = NULL;

    for (tok = strtok_r(word, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (strncmp(tok, "i=", 2) == 0) {
            o->interval_ms = strtoul(tok + 2, NULL, 10);
        } else if (strncmp(tok, "t=", 2) == 0) {
            o->thresh_us = strtoul(tok + 2, NULL, 10);
        } else if (strncmp(tok, "d=", 2) == 0) {
            o->duration_s = strtoul(tok + 2, NULL, 10);
        } else if (strncmp(tok, "m=", 2) == 0) {
            o->dirty_mb = strtoul(tok + 2, NULL, 10);
        } else if (strncmp(tok, "w=", 2) == 0) {
            o->sleep_ms = strtoul(tok + 2, NULL, 10);
        } else if (strcmp(tok, "idle") == 0) {
            o->idle = 1;
        } else if (strcmp(tok, "a") == 0) {
            o->all_cpus = 1;
        } else if (*tok) {
            fprintf(stderr, "tbprobe: unknown option '%s'\n", tok);
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    struct opts o = { .interval_ms = 500, .thresh_us = 20000 };
    struct shared *sh = NULL;
    uint64_t freq;
    long ncpu = 1;
    pid_t watcher;
    int i;

    for (i = 1; i < argc; i++) {
        parse_word(&o, argv[i]);
    }
    if (o.interval_ms == 0) {
        o.interval_ms = 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    freq = timebase_freq();
    if (!freq) {
        printf("TBP error no timebase frequency in /proc/cpuinfo\n");
        return 1;
    }
    if (o.all_cpus) {
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpu > MAX_CPUS) {
            ncpu = MAX_CPUS;
        }
        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED) {
            printf("TBP error mmap\n");
            return 1;
        }
        memset(sh, 0, sizeof(*sh));
    }
    printf("TBP start freq=%" PRIu64 " cpus=%ld interval_ms=%u thresh_us=%u"
           " sleep_ms=%u\n", freq, ncpu, o.interval_ms, o.thresh_us,
           o.sleep_ms);
    if (o.idle) {
        for (i = 0; i < 4; i++) {
            spawn_sleeper(0, 0, freq, &o, i, 4);
        }
        idle(freq, &o);
        return 0;
    }
    if (o.dirty_mb && fork() == 0) {
        dirtier(&o);
        _exit(0);
    }
    if (!o.all_cpus) {
        /*
         * Four sleepers a quarter period apart: a stop longer than a
         * period holds several deadlines, the last one at least three
         * quarters of a period in, even if a sleeper is running late.
         */
        for (i = 0; i < 4; i++) {
            spawn_sleeper(0, 0, freq, &o, i, 4);
        }
        run(0, freq, &o, NULL);
        return 0;
    }
    for (i = 0; i < ncpu; i++) {
        spawn_sleeper(i, 1, freq, &o, i, ncpu);
    }
    for (i = 1; i < ncpu; i++) {
        pid_t pid = fork();

        if (pid == 0) {
            run(i, freq, &o, sh);
            _exit(0);
        }
    }
    watcher = fork();
    if (watcher == 0) {
        watch_cpus(ncpu, freq, &o, sh);
        _exit(0);
    }
    run(0, freq, &o, sh);
    kill(watcher, SIGTERM);
    while (wait(NULL) > 0) {
    }
    return 0;
}
