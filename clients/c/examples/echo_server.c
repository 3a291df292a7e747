/* An echo server in C: answers every request (a message with a reply handle, e.g. from
 * `warren-msg call`, warren_call, or Python's Client.call) with the same body, until a message
 * whose body is "stop" arrives.
 *
 *   cc -o echo_server echo_server.c -lwarren
 *   warren run --name echo --binary ./echo_server
 */
#include <stdio.h>
#include <string.h>
#include <warren.h>

int main(void) {
    warren_client *k;
    if (warren_connect(&k) != WARREN_OK) {
        fprintf(stderr, "echo_server: %s\n", warren_last_error());
        return 1;
    }
    fprintf(stderr, "echo_server: serving as %s\n", warren_env(k));
    for (;;) {
        warren_delivery *req;
        if (warren_recv(k, 0, NULL, WARREN_FOREVER, &req) != WARREN_OK) {
            fprintf(stderr, "echo_server: recv: %s\n", warren_last_error());
            warren_close(k);
            return 1;
        }
        size_t len;
        const uint8_t *body = warren_delivery_body(req, &len);
        int stop = len == 4 && memcmp(body, "stop", 4) == 0;
        if (warren_delivery_reply(req) != 0) {
            warren_message answer = {0};
            answer.body = body;
            answer.body_len = len;
            if (warren_reply(k, req, &answer) != WARREN_OK)
                fprintf(stderr, "echo_server: reply to %s: %s\n", warren_delivery_from(req),
                        warren_last_error());
        }
        warren_delivery_free(req);
        if (stop) break;
    }
    warren_close(k);
    return 0;
}
