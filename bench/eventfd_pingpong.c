/* eventfd_pingpong.c — what one cross-thread wake-up costs here: two threads bounce a token
 * through two eventfds, each blocking in epoll_wait (as the home loop does) or in read.
 *
 *   gcc -O2 -pthread bench/eventfd_pingpong.c -o /tmp/eventfd_pingpong && /tmp/eventfd_pingpong
 *
 * Prints three figures: both threads free to run anywhere; the waiter spinning up to
 * SPIN_US on a non-blocking read before it sleeps; both threads pinned to one vCPU
 * (run under `taskset -c 0` for that one, the program itself does not pin).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum { ROUNDS = 100000 };
static int a2b, b2a;
static double spin_us;

static double now_us(void);

static void
wait_fd(int ep, int fd)
{
    struct epoll_event ev;
    uint64_t v;
    if (spin_us > 0) {
        double until = now_us() + spin_us;
        do {
            if (read(fd, &v, sizeof(v)) == sizeof(v)) {
                return;
            }
        } while (now_us() < until);
    }
    while (epoll_wait(ep, &ev, 1, -1) != 1) {
    }
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        abort();
    }
}

static int
epoll_for(int fd)
{
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        abort();
    }
    return ep;
}

static void
post(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != sizeof(one)) {
        abort();
    }
}

static void *
peer(void *arg)
{
    int ep = epoll_for(a2b);
    for (int i = 0; i < ROUNDS; i++) {
        wait_fd(ep, a2b);
        post(b2a);
    }
    close(ep);
    return NULL;
}

static double
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int cmp(const void *x, const void *y);

static void
run(const char *label)
{
    a2b = eventfd(0, EFD_NONBLOCK);
    b2a = eventfd(0, EFD_NONBLOCK);
    pthread_t th;
    pthread_create(&th, NULL, peer, NULL);
    int ep = epoll_for(b2a);
    double *rtt = malloc(sizeof(double) * ROUNDS);
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = now_us();
        post(a2b);
        wait_fd(ep, b2a);
        rtt[i] = now_us() - t0;
    }
    pthread_join(th, NULL);
    qsort(rtt, ROUNDS, sizeof(double), cmp);
    printf("%-34s round trip p50 %6.1f us, p99 %6.1f us\n", label, rtt[ROUNDS / 2],
           rtt[ROUNDS * 99 / 100]);
    free(rtt);
    close(ep);
    close(a2b);
    close(b2a);
}

int
main(void)
{
    spin_us = 0;
    run("eventfd+epoll, sleep at once:");
    spin_us = 50;
    run("eventfd, spin 50 us then sleep:");
    return 0;
}

int
cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}
