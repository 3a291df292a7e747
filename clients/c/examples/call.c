/* A client in C: look up TARGET, call it with BODY (a request with a reply capability and a
 * correlation id), print the answer's body.
 *
 *   cc -o call call.c -lwarren
 *   warren run --binary ./call --may-send echo -- /call echo hello
 */
#include <stdio.h>
#include <string.h>
#include <warren.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: call TARGET BODY\n");
        return 2;
    }
    warren_client *k;
    uint32_t target;
    warren_delivery *answer;
    if (warren_connect(&k) != WARREN_OK || warren_lookup(k, argv[1], &target, NULL) != WARREN_OK) {
        fprintf(stderr, "call: %s\n", warren_last_error());
        return 1;
    }
    warren_message msg = {0};
    msg.body = (const uint8_t *)argv[2];
    msg.body_len = strlen(argv[2]);
    int st = warren_call(k, target, &msg, 10000, &answer);
    if (st != WARREN_OK) {
        fprintf(stderr, "call: %s (%s)\n", warren_last_error(), warren_status_name(st));
        warren_close(k);
        return 1;
    }
    size_t len;
    const uint8_t *body = warren_delivery_body(answer, &len);
    printf("%.*s\n", (int)len, (const char *)body);
    warren_delivery_free(answer);
    warren_close(k);
    return 0;
}
