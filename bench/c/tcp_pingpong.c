/* tcp_pingpong.c — the physical reference for cross-process calls: a raw blocking TCP ping-pong
 * between two processes (fork) over 127.0.0.1, small messages, TCP_NODELAY. Prints the round trip
 * p50/p99 in µs as one JSON line {"bench": "tcp_pingpong", ...}, after a readable line.
 * Usage: tcp_pingpong [round_trips] [message_bytes]   (defaults 20000, 64) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX 4096

static double
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Write or read exactly n bytes; 0 on success, -1 on error or EOF. */
static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int
read_all(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void
set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        perror("setsockopt(TCP_NODELAY)");
    }
}

/* The echo side: accept one connection and send every message back until EOF. */
static int
serve(int lfd, size_t len)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        return 1;
    }
    set_nodelay(fd);
    char buf[MSG_MAX];
    while (read_all(fd, buf, len) == 0) {
        if (write_all(fd, buf, len) != 0) {
            break;
        }
    }
    close(fd);
    return 0;
}

int
main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    size_t len = argc > 2 ? (size_t)atol(argv[2]) : 64;
    if (n <= 0 || len == 0 || len > MSG_MAX) {
        fprintf(stderr, "usage: tcp_pingpong [round_trips > 0] [message_bytes 1..%d]\n", MSG_MAX);
        return 2;
    }
    long warmup = n / 10 + 100;

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) {
        perror("socket");
        return 1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t salen = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
        perror("bind/listen");
        close(lfd);
        return 1;
    }

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        close(lfd);
        return 1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the measuring side */
        _exit(serve(lfd, len));
    }
    close(lfd);

    int rc = 1;
    double *rtt = malloc(sizeof(double) * (size_t)n);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rtt == NULL || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        goto out;
    }
    set_nodelay(fd);
    char buf[MSG_MAX];
    memset(buf, 'p', len);
    for (long i = 0; i < warmup + n; i++) {
        double t0 = now_us();
        if (write_all(fd, buf, len) != 0 || read_all(fd, buf, len) != 0) {
            fprintf(stderr, "tcp_pingpong: connection lost\n");
            goto out;
        }
        if (i >= warmup) {
            rtt[i - warmup] = now_us() - t0;
        }
    }
    qsort(rtt, (size_t)n, sizeof(double), cmp_double);
    double p50 = rtt[n / 2], p99 = rtt[(n * 99) / 100], min = rtt[0];
    printf("raw TCP ping-pong over 127.0.0.1, %zu-byte messages, %ld round trips: "
           "p50 %.1f us, p99 %.1f us, min %.1f us\n",
           len, n, p50, p99, min);
    printf("{\"bench\": \"tcp_pingpong\", \"round_trips\": %ld, \"bytes\": %zu, "
           "\"p50_us\": %.2f, \"p99_us\": %.2f, \"min_us\": %.2f}\n",
           n, len, p50, p99, min);
    rc = 0;
out:
    if (fd >= 0) {
        close(fd); /* EOF ends the echo side */
    }
    free(rtt);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return rc;
}
