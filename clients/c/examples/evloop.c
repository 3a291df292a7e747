/* The event-loop interface with epoll and no threads: COUNT requests to TARGET are in flight at
 * once (each a Send with a reply capability and a correlation id, plus a Recv filtered on that
 * id, all queued with warren_submit_* and sent in one packet), and their answers are collected
 * as the descriptor becomes readable.
 *
 *   cc -o evloop evloop.c -lwarren
 *   warren run --binary ./evloop --may-send echo -- /evloop echo 100
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <warren.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: evloop TARGET COUNT\n");
        return 2;
    }
    int count = atoi(argv[2]);
    warren_client *k;
    uint32_t target;
    if (warren_connect(&k) != WARREN_OK || warren_lookup(k, argv[1], &target, NULL) != WARREN_OK) {
        fprintf(stderr, "evloop: %s\n", warren_last_error());
        return 1;
    }
    for (int i = 0; i < count; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "request %d", i);
        warren_message m = {0};
        m.body = (const uint8_t *)body;
        m.body_len = (size_t)n;
        m.has_correlation = true;
        m.correlation = 0x10000u + (uint64_t)i;
        m.reply_to = WARREN_DEFAULT_MAILBOX;
        warren_filter f = {0};
        f.has_correlation = true;
        f.correlation = m.correlation;
        uint32_t id;
        if (warren_submit_send(k, target, &m, true, &id) != WARREN_OK ||
            warren_submit_recv(k, 0, &f, 10000, &id) != WARREN_OK) {
            fprintf(stderr, "evloop: submit: %s\n", warren_last_error());
            return 1;
        }
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, warren_fd(k), &ev);
    int answers = 0, oks = 0, failed = 0;
    if (warren_flush(k) != WARREN_OK) {
        fprintf(stderr, "evloop: flush: %s\n", warren_last_error());
        return 1;
    }
    while (answers < count && !failed) {
        struct epoll_event got;
        if (epoll_wait(ep, &got, 1, 15000) != 1) {
            fprintf(stderr, "evloop: no answer in 15 s\n");
            return 1;
        }
        size_t ready;
        if (warren_process(k, &ready) != WARREN_OK) {
            fprintf(stderr, "evloop: process: %s\n", warren_last_error());
            return 1;
        }
        warren_completion c;
        while (warren_next_completion(k, &c) == WARREN_OK) {
            if (c.kind == WARREN_DONE_DELIVERY) {
                uint64_t corr = 0;
                warren_delivery_correlation(c.delivery, &corr);
                size_t len;
                const uint8_t *b = warren_delivery_body(c.delivery, &len);
                char want[32];
                int n = snprintf(want, sizeof want, "request %d", (int)(corr - 0x10000u));
                if ((size_t)n != len || memcmp(b, want, len) != 0) {
                    fprintf(stderr, "evloop: answer %.*s for correlation %llu\n", (int)len,
                            (const char *)b, (unsigned long long)corr);
                    failed = 1;
                }
                answers++;
            } else if (c.kind == WARREN_DONE_OK) {
                oks++;
            } else {
                fprintf(stderr, "evloop: request %u: %s: %s\n", c.id, warren_status_name(c.status),
                        c.detail ? c.detail : "");
                failed = 1;
            }
            warren_completion_release(&c);
        }
    }
    printf("evloop: %d answers, %d sends acknowledged\n", answers, oks);
    warren_close(k);
    return failed;
}
