/* libwarren's side of bench/clients.sh, inside environments. Prints one JSON line per
 * measurement, in the shape of warren-ipc-bench's records.
 *
 *   bench server PEER              answer 64-byte messages with warren_send_recv until "stop"
 *   bench ping TARGET ITERS WARMUP round trips with warren_send_recv (both requests in one packet)
 *   bench call-server              answer calls with warren_reply until "stop"
 *   bench call TARGET ITERS WARMUP round trips with warren_call
 *   bench send TARGET COUNT BATCH  batch frames of BATCH bodies, 8 in flight (event-loop calls)
 *   bench recv COUNT MAX           warren_recv_batch of up to MAX, first arrival to last
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <warren.h>

static const char PAYLOAD[65] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void die(const char *what) {
    fprintf(stderr, "bench: %s: %s\n", what, warren_last_error());
    exit(1);
}

static uint32_t find(warren_client *k, const char *name) {
    uint32_t h;
    for (int i = 0; i < 400; i++) {
        int st = warren_lookup(k, name, &h, NULL);
        if (st == WARREN_OK) return h;
        if (st != WARREN_NOT_FOUND) die("lookup");
        usleep(50000);
    }
    die("lookup (20 s)");
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int is_stop(const warren_delivery *d) {
    size_t len;
    const uint8_t *b = warren_delivery_body(d, &len);
    return len == 4 && !memcmp(b, "stop", 4);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    warren_client *k;
    if (warren_connect(&k) != WARREN_OK) die("connect");
    const char *mode = argv[1];
    warren_message m = {0};
    m.body = (const uint8_t *)PAYLOAD;
    m.body_len = 64;
    if (!strcmp(mode, "server") && argc == 3) {
        uint32_t peer = 0;
        warren_delivery *d;
        if (warren_recv(k, 0, NULL, -1, &d) != WARREN_OK) die("recv");
        while (!is_stop(d)) {
            if (!peer) peer = find(k, argv[2]);
            warren_delivery_free(d);
            int sent;
            if (warren_send_recv(k, peer, &m, -1, &sent, &d) != WARREN_OK || sent != WARREN_OK)
                die("send_recv");
        }
        warren_delivery_free(d);
    } else if (!strcmp(mode, "call-server")) {
        warren_delivery *d;
        for (;;) {
            if (warren_recv(k, 0, NULL, -1, &d) != WARREN_OK) die("recv");
            if (is_stop(d)) break;
            if (warren_reply(k, d, &m) != WARREN_OK) die("reply");
            warren_delivery_free(d);
        }
        warren_delivery_free(d);
    } else if ((!strcmp(mode, "ping") || !strcmp(mode, "call")) && argc == 5) {
        int call = !strcmp(mode, "call");
        uint32_t h = find(k, argv[2]);
        int iters = atoi(argv[3]), warmup = atoi(argv[4]);
        double *s = malloc(sizeof(double) * (size_t)iters);
        for (int i = 0; i < warmup + iters; i++) {
            warren_delivery *d;
            double t = now_us();
            if (call) {
                if (warren_call(k, h, &m, -1, &d) != WARREN_OK) die("call");
            } else {
                int sent;
                if (warren_send_recv(k, h, &m, -1, &sent, &d) != WARREN_OK || sent != WARREN_OK)
                    die("send_recv");
            }
            double dt = now_us() - t;
            size_t len;
            warren_delivery_body(d, &len);
            if (len != 64) die("answer size");
            warren_delivery_free(d);
            if (i >= warmup) s[i - warmup] = dt;
        }
        warren_message stop = {0};
        stop.body = (const uint8_t *)"stop";
        stop.body_len = 4;
        if (warren_send(k, h, &stop, true) != WARREN_OK) die("stop");
        qsort(s, (size_t)iters, sizeof(double), cmp);
        printf("{\"system\":\"c\",\"test\":\"rtt\",\"variant\":\"%s\",\"count\":%d,\"p50_us\":%.2f,"
               "\"p99_us\":%.2f}\n",
               call ? "call" : "pipelined", iters, s[iters / 2], s[(size_t)iters * 99 / 100]);
        free(s);
    } else if (!strcmp(mode, "send") && argc == 5) {
        uint32_t h = find(k, argv[2]);
        long count = atol(argv[3]);
        int batch = atoi(argv[4]);
        warren_bytes *bodies = malloc(sizeof(warren_bytes) * (size_t)batch);
        for (int i = 0; i < batch; i++) bodies[i] = (warren_bytes){(const uint8_t *)PAYLOAD, 64};
        /* As the Rust client's send_many: frames of `batch` bodies, at most 8 awaiting an answer. */
        long sent = 0, accepted = 0;
        int inflight = 0;
        while (accepted < count) {
            while (inflight < 8 && sent < count) {
                size_t n = (size_t)(count - sent < batch ? count - sent : batch);
                uint32_t id;
                if (warren_submit_send_batch(k, h, bodies, n, true, false, &id) != WARREN_OK)
                    die("submit");
                sent += (long)n;
                inflight++;
            }
            if (warren_flush(k) != WARREN_OK) die("flush");
            struct pollfd p = {.fd = warren_fd(k), .events = POLLIN};
            if (poll(&p, 1, 30000) != 1) die("no answer in 30 s");
            if (warren_process(k, NULL) != WARREN_OK) die("process");
            warren_completion c;
            while (warren_next_completion(k, &c) == WARREN_OK) {
                if (c.kind != WARREN_DONE_ACCEPTED) die("a batch was refused");
                accepted += c.accepted;
                inflight--;
            }
        }
        free(bodies);
    } else if (!strcmp(mode, "recv") && argc == 4) {
        long count = atol(argv[2]), got = 0, before = 0;
        uint32_t max = (uint32_t)atoi(argv[3]);
        double t0 = 0;
        while (got < count) {
            warren_batch *b;
            if (warren_recv_batch(k, 0, max, 30000, &b) != WARREN_OK) die("recv_batch");
            size_t n = warren_batch_count(b);
            const uint8_t *body;
            size_t len;
            while (warren_batch_next(b, &body, &len, NULL, NULL))
                if (len != 64) die("message size");
            got += (long)n;
            warren_batch_free(b);
            if (t0 == 0) {
                t0 = now_us();
                before = got;
            }
        }
        double dt = now_us() - t0;
        printf("{\"system\":\"c\",\"test\":\"throughput\",\"variant\":\"batch frames, up to %u per "
               "receive\",\"count\":%ld,\"msgs_per_s\":%.0f}\n",
               max, got - before, (double)(got - before) / (dt / 1e6));
    } else {
        fprintf(stderr, "bench: bad arguments\n");
        return 2;
    }
    warren_close(k);
    return 0;
}
