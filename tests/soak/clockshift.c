/* Steps one process's wall clock, as an NTP step would, and nothing else.
 *
 * Loaded with LD_PRELOAD into an agent started by the soak (tests/soak/world.py; see
 * docs/soak.md). CLOCK_REALTIME (and its coarse variant), gettimeofday() and time() are
 * moved by the whole seconds written in the file named by $CLOCKSHIFT_FILE (for example
 * "-30"), re-read at most five times a second. CLOCK_MONOTONIC and every sleep and timed
 * wait are left alone, which is what a real step leaves alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static _Atomic long long offset_s;
static _Atomic long long next_read_ns;

static void load_real(void) {
    if (!real_clock_gettime) {
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    }
}

static void refresh(void) {
    struct timespec mono;
    real_clock_gettime(CLOCK_MONOTONIC, &mono);
    long long now = (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec;
    if (now < atomic_load(&next_read_ns)) {
        return;
    }
    atomic_store(&next_read_ns, now + 200000000LL);
    const char *path = getenv("CLOCKSHIFT_FILE");
    if (path == NULL) {
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    char text[32] = {0};
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got > 0) {
        atomic_store(&offset_s, strtoll(text, NULL, 10));
    }
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    load_real();
    int rc = real_clock_gettime(clock, ts);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        refresh();
        ts->tv_sec += (time_t)atomic_load(&offset_s);
    }
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;  /* glibc declares tv nonnull */
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL) {
        *out = ts.tv_sec;
    }
    return ts.tv_sec;
}
