/* bwprobe.c — memory read bandwidth with N threads (the roofline for
 * generation): each thread sums its slice of a 2 GiB buffer; best of 5.
 * Usage: bwprobe [threads]. Prints {"threads": n, "read_gbps": x}. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIZE ((size_t)2 << 30)
typedef struct { const uint64_t *p; size_t n; uint64_t sum; } job;

static void *reader(void *arg) {
    job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) s0 += j->p[i], s1 += j->p[i + 1], s2 += j->p[i + 2], s3 += j->p[i + 3];
    j->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 2;
    if (nt < 1 || nt > 256) nt = 2;
    uint64_t *buf = malloc(SIZE);
    if (!buf) return 1;
    memset(buf, 1, SIZE);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[256];
        job jobs[256];
        size_t per = SIZE / 8 / (size_t)nt;
        double t0 = now();
        for (int i = 0; i < nt; i++) {
            jobs[i] = (job){buf + (size_t)i * per, per, 0};
            pthread_create(&th[i], NULL, reader, &jobs[i]);
        }
        uint64_t s = 0;
        for (int i = 0; i < nt; i++) pthread_join(th[i], NULL), s += jobs[i].sum;
        double gbps = (double)SIZE / (now() - t0) / 1e9;
        if (gbps > best) best = gbps;
        if (s == 42) printf(" ");
    }
    printf("{\"threads\": %d, \"read_gbps\": %.2f}\n", nt, best);
    free(buf);
    return 0;
}
