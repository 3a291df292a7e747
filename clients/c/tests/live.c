/* Live tests of libwarren, run inside an environment against a real kernel (driven by
 * clients/tests/live.sh). Modes:
 *
 *   live ops           every operation and its error paths, on this environment's own mailboxes
 *   live call TARGET BODY   a call to TARGET's server; prints the answer's body
 *   live fake-version  the `version` refusal, against a fake kernel on a socket pair
 *   live not-a-socket  warren_from_fd on a pipe: WARREN_E_NO_CONNECTION, and the pipe closed
 *   live spawn TEMPLATE     (protocol version 3) spawn children of TEMPLATE, whose command is
 *                      `live kid`: one by the event loop with every field of the request, one
 *                      blocking and stopped; restrict; a refused variable
 *   live kid WORD      a child: its table is exactly its mailbox and `out`; sends
 *                      "kid WORD $KID_WORD" through `out` (WORD `wait`: waits to be stopped)
 *
 * Exit status 0 when every check passed; each failure is printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <poll.h>
#include <warren.h>

static int failures = 0, checks = 0;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            failures++;                                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, " (last error: %s)\n", warren_last_error());                   \
        }                                                                                    \
    } while (0)

#define EXPECT(call, status)                                                                 \
    do {                                                                                     \
        int st_ = (call);                                                                    \
        CHECK(st_ == (status), "%s gave %s, not %s", #call, warren_status_name(st_),         \
              warren_status_name(status));                                                   \
    } while (0)

static warren_message text(const char *s) {
    warren_message m = {0};
    m.body = (const uint8_t *)s;
    m.body_len = strlen(s);
    return m;
}

static int body_is(const warren_delivery *d, const char *s) {
    size_t len;
    const uint8_t *b = warren_delivery_body(d, &len);
    return len == strlen(s) && memcmp(b, s, len) == 0;
}

static void ops(warren_client *k) {
    /* whoami: handle 1 is the default mailbox with every right. */
    warren_identity *id = NULL;
    EXPECT(warren_whoami(k, &id), WARREN_OK);
    CHECK(id && strcmp(warren_identity_env(id), warren_env(k)) == 0, "whoami names another env");
    uint32_t h = 0, r = 0;
    const char *des = NULL;
    CHECK(warren_identity_entry(id, 0, &h, &des, &r) && h == 1 && r == 0xf,
          "entry 0 is %u rights %#x", h, r);
    warren_identity_free(id);

    /* send to self, receive, with headers, correlation and a selective receive. */
    warren_message m = text("first");
    EXPECT(warren_send(k, 1, &m, true), WARREN_OK);
    warren_header hd = {"kind", 4, (const uint8_t *)"second", 6};
    m = text("second");
    m.headers = &hd;
    m.n_headers = 1;
    m.has_correlation = true;
    m.correlation = 77;
    EXPECT(warren_send(k, 1, &m, true), WARREN_OK);
    warren_filter f = {0};
    f.has_correlation = true;
    f.correlation = 77;
    warren_delivery *d = NULL;
    EXPECT(warren_recv(k, 0, &f, 1000, &d), WARREN_OK);
    uint64_t corr = 0;
    const char *hn;
    size_t hnl, hvl;
    const uint8_t *hv;
    CHECK(d && body_is(d, "second") && warren_delivery_correlation(d, &corr) && corr == 77,
          "selective receive took the wrong message");
    CHECK(d && warren_delivery_header(d, 0, &hn, &hnl, &hv, &hvl) && hnl == 4 &&
              !memcmp(hn, "kind", 4) && hvl == 6,
          "header lost");
    CHECK(d && strcmp(warren_delivery_from(d), warren_env(k)) == 0, "from is %s",
          d ? warren_delivery_from(d) : "?");
    warren_delivery_free(d);
    d = NULL;
    d = NULL;
    EXPECT(warren_recv(k, 0, NULL, 1000, &d), WARREN_OK);
    CHECK(d && body_is(d, "first"), "the skipped message lost its place");
    warren_delivery_free(d);
    d = NULL;

    /* timeout. */
    EXPECT(warren_recv(k, 0, NULL, 0, &d), WARREN_TIMEOUT);

    /* not-found and no-such-handle. */
    EXPECT(warren_lookup(k, "no-such-environment-here", &h, &r), WARREN_NOT_FOUND);
    m = text("x");
    EXPECT(warren_send(k, 4000, &m, true), WARREN_NO_SUCH_HANDLE);

    /* used-up: a one-shot capability. */
    uint32_t uses = 1, once = 0;
    EXPECT(warren_attenuate(k, 1, WARREN_RIGHT_SEND, &uses, NULL, NULL, &once, &r), WARREN_OK);
    CHECK(r == WARREN_RIGHT_SEND, "attenuated rights %#x", r);
    EXPECT(warren_send(k, once, &m, true), WARREN_OK);
    EXPECT(warren_send(k, once, &m, true), WARREN_USED_UP);
    EXPECT(warren_recv(k, 0, NULL, 1000, &d), WARREN_OK);
    warren_delivery_free(d);
    d = NULL;

    /* expired: a capability that lives 1 ms. */
    uint64_t ms = 1;
    uint32_t brief = 0;
    EXPECT(warren_attenuate(k, 1, WARREN_RIGHT_SEND, NULL, &ms, NULL, &brief, &r), WARREN_OK);
    usleep(50000);
    EXPECT(warren_send(k, brief, &m, true), WARREN_EXPIRED);

    /* no-right: a SEND-only handle cannot monitor. */
    uint64_t ref = 0;
    EXPECT(warren_monitor(k, once, &ref), WARREN_NO_RIGHT);

    /* revoked: the caretaker pattern; a badge the receiver sees. */
    uint64_t badge = 42;
    uint32_t given = 0;
    EXPECT(warren_attenuate(k, 1, WARREN_RIGHT_SEND, NULL, NULL, &badge, &given, &r), WARREN_OK);
    EXPECT(warren_send(k, given, &m, true), WARREN_OK);
    EXPECT(warren_recv(k, 0, NULL, 1000, &d), WARREN_OK);
    CHECK(d && warren_delivery_badge(d) == 42, "badge %llu",
          d ? (unsigned long long)warren_delivery_badge(d) : 0ULL);
    warren_delivery_free(d);
    d = NULL;
    EXPECT(warren_revoke(k, 1), WARREN_OK);
    EXPECT(warren_send(k, given, &m, true), WARREN_REVOKED);
    EXPECT(warren_drop(k, given), WARREN_OK);
    EXPECT(warren_send(k, given, &m, true), WARREN_NO_SUCH_HANDLE);

    /* full: a created mailbox filled without waiting (the kernel's default capacity). */
    uint32_t box = 0;
    EXPECT(warren_create_mailbox(k, "spare", &box), WARREN_OK);
    EXPECT(warren_create_mailbox(k, "spare", &h), WARREN_BAD_REQUEST);
    int sent = 0, st = WARREN_OK;
    while (sent < 100000 && (st = warren_send(k, box, &m, false)) == WARREN_OK) sent++;
    CHECK(st == WARREN_FULL && sent > 0, "after %d sends: %s", sent, warren_status_name(st));
    /* a batch receive from the created mailbox takes what is queued. */
    warren_batch *b = NULL;
    EXPECT(warren_recv_batch(k, box, WARREN_MAX_BATCH, 1000, &b), WARREN_OK);
    CHECK(warren_batch_count(b) == (size_t)sent, "batch took %zu of %d", warren_batch_count(b),
          sent);
    warren_batch_free(b);
    b = NULL;

    /* dead: destroy the created mailbox by dropping its RECEIVE handle. (Monitors of an
     * environment that ends are tested by `live down`.) */
    uint32_t to_box = 0;
    EXPECT(warren_attenuate(k, box, WARREN_RIGHT_SEND, NULL, NULL, NULL, &to_box, &r), WARREN_OK);
    EXPECT(warren_drop(k, box), WARREN_OK);
    EXPECT(warren_send(k, to_box, &m, true), WARREN_DEAD);

    /* batches: 1000 bodies through the default mailbox's send right, taken in batches. */
    enum { N = 1000 };
    static char bufs[N][16];
    static warren_bytes bodies[N];
    for (int i = 0; i < N; i++) {
        bodies[i].len = (size_t)snprintf(bufs[i], sizeof bufs[i], "b%d", i);
        bodies[i].ptr = (const uint8_t *)bufs[i];
    }
    size_t accepted = 0;
    EXPECT(warren_send_batch(k, 1, bodies, 40, true, &accepted), WARREN_OK);
    CHECK(accepted == 40, "accepted %zu", accepted);
    size_t seen = 0;
    while (seen < 40) {
        b = NULL;
        if (warren_recv_batch(k, 0, 16, 1000, &b) != WARREN_OK) break;
        for (size_t i = 0; i < warren_batch_count(b); i++, seen++) {
            const uint8_t *p;
            size_t len;
            const char *from;
            uint64_t bg;
            char want[16];
            snprintf(want, sizeof want, "b%zu", seen);
            CHECK(warren_batch_get(b, i, &p, &len, &from, &bg) && len == strlen(want) &&
                      !memcmp(p, want, len),
                  "batch message %zu out of order", seen);
        }
        warren_batch_free(b);
    b = NULL;
    }
    CHECK(seen == 40, "received %zu of 40", seen);
    /* the same through the cursor */
    EXPECT(warren_send_batch(k, 1, bodies, 5, true, &accepted), WARREN_OK);
    b = NULL;
    EXPECT(warren_recv_batch(k, 0, 16, 1000, &b), WARREN_OK);
    {
        const uint8_t *p;
        size_t len, i = 0;
        const char *from;
        while (warren_batch_next(b, &p, &len, &from, NULL)) {
            char want[16];
            snprintf(want, sizeof want, "b%zu", i++);
            CHECK(len == strlen(want) && !memcmp(p, want, len) && !strcmp(from, warren_env(k)),
                  "cursor message %zu", i - 1);
        }
        CHECK(i == 5 && warren_batch_count(b) == 5, "cursor gave %zu of 5", i);
    }
    warren_batch_free(b);
    b = NULL;
    /* without wait, a batch larger than the room is accepted as a prefix. */
    EXPECT(warren_send_batch(k, 1, bodies, N, false, &accepted), WARREN_OK);
    CHECK(accepted > 0 && accepted < N, "accepted %zu of %d without waiting", accepted, N);
    b = NULL;
    EXPECT(warren_recv_batch(k, 0, WARREN_MAX_BATCH, 1000, &b), WARREN_OK);
    CHECK(warren_batch_count(b) == accepted, "took %zu, accepted %zu", warren_batch_count(b),
          accepted);
    warren_batch_free(b);
    b = NULL;
    /* a message that is not plain comes alone out of a batch receive. */
    m = text("not plain");
    m.has_correlation = true;
    m.correlation = 5;
    EXPECT(warren_send(k, 1, &m, true), WARREN_OK);
    EXPECT(warren_recv_batch(k, 0, 8, 1000, &b), WARREN_OK);
    CHECK(warren_batch_delivery(b) && body_is(warren_batch_delivery(b), "not plain"),
          "a non-plain message did not come alone");
    warren_batch_free(b);
    b = NULL;

    /* the event-loop interface: several requests in one packet, answers by id. */
    uint32_t id_who = 0, id_send = 0, id_recv = 0, id_bad = 0;
    m = text("looped");
    EXPECT(warren_submit_whoami(k, &id_who), WARREN_OK);
    EXPECT(warren_submit_recv(k, 0, NULL, 2000, &id_recv), WARREN_OK);
    EXPECT(warren_submit_send(k, 1, &m, true, &id_send), WARREN_OK);
    EXPECT(warren_submit_lookup(k, "nobody-by-this-name", &id_bad), WARREN_OK);
    CHECK(warren_want_write(k), "nothing queued");
    warren_completion c;
    EXPECT(warren_next_completion(k, &c), WARREN_E_WOULD_BLOCK);
    EXPECT(warren_flush(k), WARREN_OK);
    int got = 0;
    while (got < 4) {
        struct pollfd p = {.fd = warren_fd(k), .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) break;
        size_t ready = 0;
        EXPECT(warren_process(k, &ready), WARREN_OK);
        while (warren_next_completion(k, &c) == WARREN_OK) {
            got++;
            if (c.id == id_who)
                CHECK(c.kind == WARREN_DONE_IDENTITY && c.identity, "whoami kind %d", c.kind);
            else if (c.id == id_recv)
                CHECK(c.kind == WARREN_DONE_DELIVERY && body_is(c.delivery, "looped"),
                      "recv kind %d", c.kind);
            else if (c.id == id_send)
                CHECK(c.kind == WARREN_DONE_OK, "send kind %d", c.kind);
            else if (c.id == id_bad)
                CHECK(c.kind == WARREN_DONE_ERROR && c.status == WARREN_NOT_FOUND && c.detail,
                      "lookup kind %d status %d", c.kind, c.status);
            else
                CHECK(0, "an answer to unknown id %u", c.id);
            warren_completion_release(&c);
        }
    }
    CHECK(got == 4, "%d of 4 answers", got);

    /* attestation: a quote, or attest-failed when this host has no root of trust set up. */
    uint8_t *quote = NULL;
    size_t qlen = 0;
    st = warren_attest(k, (const uint8_t *)"nonce-123", 9, (const uint8_t *)"key", 3, &quote, &qlen);
    CHECK((st == WARREN_OK && qlen > 0 && quote[0] == '{') || st == WARREN_ATTEST_FAILED,
          "attest: %s", warren_status_name(st));
    warren_buffer_free(quote, qlen);
    EXPECT(warren_attest(k, NULL, 0, NULL, 0, &quote, &qlen), WARREN_BAD_REQUEST);

    /* bad arguments are refused before anything is sent. */
    EXPECT(warren_send(k, 1, NULL, true), WARREN_E_INVALID);
    EXPECT(warren_lookup(k, NULL, &h, &r), WARREN_E_INVALID);
    EXPECT(warren_attenuate(k, 1, 0x40, NULL, NULL, NULL, &h, &r), WARREN_E_INVALID);
    static uint8_t huge[WARREN_MAX_BODY + 1];
    m.body = huge;
    m.body_len = sizeof huge;
    EXPECT(warren_send(k, 1, &m, true), WARREN_E_ENCODE);
    /* the connection still works after all of that. */
    m = text("still here");
    EXPECT(warren_send(k, 1, &m, true), WARREN_OK);
    EXPECT(warren_recv(k, 0, NULL, 1000, &d), WARREN_OK);
    CHECK(d && body_is(d, "still here"), "the last message");
    warren_delivery_free(d);
    d = NULL;
}

/* A fake kernel that speaks no common version: warren_from_fd reports WARREN_VERSION. */
static void fake_version(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) {
        perror("socketpair");
        failures++;
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t buf[64];
        ssize_t n = recv(sv[1], buf, sizeof buf, 0);
        /* Error (0x87) under the Hello's id, code 11 version, empty detail. */
        uint8_t err[13] = {9, 0, 0, 0, 0x87, 0, 0, 0, 0, 11, 0, 0, 0};
        if (n >= 9) memcpy(err + 5, buf + 5, 4);
        send(sv[1], err, sizeof err, 0);
        _exit(0);
    }
    close(sv[1]);
    warren_client *k = NULL;
    EXPECT(warren_from_fd(sv[0], &k), WARREN_VERSION);
    CHECK(k == NULL, "a client after a refused handshake");
}

/* A descriptor that is not a socket is no kernel connection, as for warren_connect; ownership
 * passed, so libwarren closed it. */
static void not_a_socket(void) {
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        failures++;
        return;
    }
    warren_client *k = NULL;
    EXPECT(warren_from_fd(p[0], &k), WARREN_E_NO_CONNECTION);
    CHECK(k == NULL, "a client on a pipe");
    CHECK(strstr(warren_last_error(), "not a socket") != NULL, "the message: %s", warren_last_error());
    CHECK(fcntl(p[0], F_GETFD) == -1 && errno == EBADF, "the descriptor was left open");
    close(p[1]);
}

/* The next completion, waiting for up to 20 s. */
static int next_done(warren_client *k, warren_completion *done) {
    for (int i = 0; i < 400; i++) {
        size_t ready = 0;
        int st = warren_process(k, &ready);
        if (st != WARREN_OK) return st;
        st = warren_next_completion(k, done);
        if (st != WARREN_E_WOULD_BLOCK) return st;
        struct pollfd p = {.fd = warren_fd(k), .events = POLLIN};
        poll(&p, 1, 50);
    }
    return WARREN_TIMEOUT;
}

static void spawn(warren_client *k, const char *template) {
    CHECK(warren_version(k) >= 3, "protocol version %u", warren_version(k));
    /* The SPAWN handle on the template, from the table. */
    warren_identity *id = NULL;
    uint32_t sh = 0;
    EXPECT(warren_whoami(k, &id), WARREN_OK);
    for (size_t i = 0; id && i < warren_identity_count(id); i++) {
        uint32_t h, r;
        const char *des;
        if (warren_identity_entry(id, i, &h, &des, &r) && (r & WARREN_RIGHT_SPAWN)) sh = h;
    }
    warren_identity_free(id);
    CHECK(sh != 0, "no handle with SPAWN in the table");
    char child_a[128], child_b[128];
    snprintf(child_a, sizeof child_a, "%s-a", template);
    snprintf(child_b, sizeof child_b, "%s-b", template);

    /* Event loop, every field: suffix, args, env, limits, initial names (our mailbox as out). */
    const char *args[] = {"hello"};
    warren_env_var env[] = {{"KID_WORD", "from-c"}};
    warren_spawn_name names[] = {{"out", WARREN_DEFAULT_MAILBOX}};
    warren_limits limits = {.memory = 256u << 20, .pids = 64};
    warren_spawn_request req = {.handle = sh, .suffix = "a", .args = args, .n_args = 1,
                                .env = env, .n_env = 1, .limits = &limits, .detach = false,
                                .names = names, .n_names = 1};
    uint32_t id_spawn = 0;
    EXPECT(warren_submit_spawn(k, &req, &id_spawn), WARREN_OK);
    warren_completion done;
    EXPECT(next_done(k, &done), WARREN_OK);
    CHECK(done.id == id_spawn && done.kind == WARREN_DONE_SPAWNED && done.spawned,
          "completion kind %d status %s", done.kind, warren_status_name(done.status));
    uint64_t ref_a = 0;
    if (done.kind == WARREN_DONE_SPAWNED && done.spawned) {
        CHECK(!strcmp(warren_spawned_child(done.spawned), child_a), "child %s",
              warren_spawned_child(done.spawned));
        CHECK(warren_spawned_mailbox(done.spawned) != 0 && warren_spawned_control(done.spawned) != 0,
              "no mailbox or control handle");
        ref_a = warren_spawned_reference(done.spawned);
    }
    warren_completion_release(&done);
    CHECK(done.spawned == NULL, "release left the answer");
    /* Its message through `out`, then its down notice (it exits 0). */
    warren_delivery *d = NULL;
    EXPECT(warren_recv(k, 0, NULL, 20000, &d), WARREN_OK);
    CHECK(d && body_is(d, "kid hello from-c") && !strcmp(warren_delivery_from(d), child_a),
          "the child's message");
    warren_delivery_free(d);
    d = NULL;
    uint64_t down = 0;
    EXPECT(warren_recv(k, 0, NULL, 20000, &d), WARREN_OK);
    CHECK(d && warren_delivery_down(d, &down) && down == ref_a, "no down notice for %s", child_a);
    warren_delivery_free(d);
    d = NULL;

    /* A variable the template does not allow: not-allowed, nothing spawned. */
    warren_env_var bad[] = {{"PATH", "/evil"}};
    warren_spawn_request refused = {.handle = sh, .suffix = "x", .env = bad, .n_env = 1};
    warren_spawned *sp = NULL;
    EXPECT(warren_spawn(k, &refused, &sp), WARREN_NOT_ALLOWED);
    CHECK(sp == NULL, "an answer for a refused spawn");
    /* Positive control of the same shape, blocking: a child that waits, then stop it. */
    const char *wait_args[] = {"wait"};
    warren_spawn_request waiter = {.handle = sh, .suffix = "b", .args = wait_args, .n_args = 1,
                                   .env = env, .n_env = 1};
    EXPECT(warren_spawn(k, &waiter, &sp), WARREN_OK);
    if (sp) {
        CHECK(!strcmp(warren_spawned_child(sp), child_b), "child %s", warren_spawned_child(sp));
        /* The mailbox handle has no STOP right. */
        EXPECT(warren_stop(k, warren_spawned_mailbox(sp), false), WARREN_NO_RIGHT);
        EXPECT(warren_stop(k, warren_spawned_control(sp), false), WARREN_OK);
        EXPECT(warren_recv(k, 0, NULL, 20000, &d), WARREN_OK);
        CHECK(d && warren_delivery_down(d, &down) && down == warren_spawned_reference(sp),
              "no down notice for %s", child_b);
        warren_delivery_free(d);
        d = NULL;
        warren_spawned_free(sp);
    }

    /* Restrict, blocking and by the event loop: new SPAWN handles. */
    uint32_t share = 1, rh = 0, rr = 0;
    warren_limits lower = {.pids = 32};
    EXPECT(warren_restrict(k, sh, &share, &lower, &rh, &rr), WARREN_OK);
    CHECK(rh != 0 && rh != sh && (rr & WARREN_RIGHT_SPAWN), "restricted %u rights %#x", rh, rr);
    uint32_t id_r = 0, id_s = 0;
    EXPECT(warren_submit_restrict(k, rh, NULL, NULL, &id_r), WARREN_OK);
    EXPECT(next_done(k, &done), WARREN_OK);
    CHECK(done.id == id_r && done.kind == WARREN_DONE_HANDLE && (done.rights & WARREN_RIGHT_SPAWN),
          "restrict completion kind %d", done.kind);
    /* Stop through a handle without STOP, by the event loop: an error completion. */
    EXPECT(warren_submit_stop(k, rh, true, &id_s), WARREN_OK);
    EXPECT(next_done(k, &done), WARREN_OK);
    CHECK(done.id == id_s && done.kind == WARREN_DONE_ERROR && done.status == WARREN_NO_RIGHT,
          "stop completion kind %d status %s", done.kind, warren_status_name(done.status));
}

static int kid(warren_client *k, const char *word) {
    warren_identity *id = NULL;
    EXPECT(warren_whoami(k, &id), WARREN_OK);
    uint32_t h = 0, r = 0;
    const char *des = NULL;
    CHECK(id && warren_identity_count(id) == 2, "the child's table has %zu entries",
          id ? warren_identity_count(id) : 0);
    CHECK(id && warren_identity_entry(id, 1, &h, &des, &r) && h == 2 && !strcmp(des, "out"),
          "entry 1 is %u %s", h, des ? des : "(none)");
    warren_identity_free(id);
    if (!strcmp(word, "wait")) {
        warren_delivery *d = NULL;
        warren_recv(k, 0, NULL, WARREN_FOREVER, &d);
        return 1;
    }
    char body[256];
    const char *v = getenv("KID_WORD");
    snprintf(body, sizeof body, "kid %s %s", word, v ? v : "(unset)");
    warren_message m = text(body);
    EXPECT(warren_send(k, 2, &m, true), WARREN_OK);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "fake-version")) {
        fake_version();
    } else if (argc >= 2 && !strcmp(argv[1], "not-a-socket")) {
        not_a_socket();
    } else if (argc >= 2 && !strcmp(argv[1], "ops")) {
        warren_client *k;
        if (warren_connect(&k) != WARREN_OK) {
            fprintf(stderr, "live: %s\n", warren_last_error());
            return 1;
        }
        CHECK(warren_version(k) >= 2, "protocol version %u", warren_version(k));
        ops(k);
        warren_close(k);
    } else if (argc == 4 && !strcmp(argv[1], "call")) {
        warren_client *k;
        uint32_t target = 0;
        if (warren_connect(&k) != WARREN_OK) {
            fprintf(stderr, "live: %s\n", warren_last_error());
            return 1;
        }
        /* The server may still be starting: look it up for up to 20 s. */
        int st = WARREN_NOT_FOUND;
        for (int i = 0; i < 400 && (st = warren_lookup(k, argv[2], &target, NULL)) == WARREN_NOT_FOUND; i++)
            usleep(50000);
        EXPECT(st, WARREN_OK);
        warren_message m = text(argv[3]);
        warren_delivery *d = NULL;
        EXPECT(warren_call(k, target, &m, 10000, &d), WARREN_OK);
        if (d) {
            size_t len;
            const uint8_t *b = warren_delivery_body(d, &len);
            printf("%.*s\n", (int)len, (const char *)b);
            CHECK(body_is(d, argv[3]), "the answer is not the request's body");
            CHECK(strcmp(warren_delivery_from(d), argv[2]) == 0, "answered by %s",
                  warren_delivery_from(d));
            warren_delivery_free(d);
    d = NULL;
        }
        warren_close(k);
    } else if (argc == 3 && !strcmp(argv[1], "down")) {
        /* Monitor TARGET's server, stop it, and see its down notice; then sends to it are
         * refused dead. */
        warren_client *k;
        uint32_t target = 0;
        if (warren_connect(&k) != WARREN_OK) {
            fprintf(stderr, "live: %s\n", warren_last_error());
            return 1;
        }
        EXPECT(warren_lookup(k, argv[2], &target, NULL), WARREN_OK);
        uint64_t ref = 0, down = 0;
        EXPECT(warren_monitor(k, target, &ref), WARREN_OK);
        warren_message m = text("stop");
        warren_delivery *d = NULL;
        EXPECT(warren_call(k, target, &m, 10000, &d), WARREN_OK);
        warren_delivery_free(d);
        d = NULL;
        EXPECT(warren_recv(k, 0, NULL, 10000, &d), WARREN_OK);
        CHECK(d && warren_delivery_down(d, &down) && down == ref &&
                  !strcmp(warren_delivery_from(d), argv[2]),
              "no down notice from %s", argv[2]);
        warren_delivery_free(d);
        m = text("anyone there?");
        EXPECT(warren_send(k, target, &m, true), WARREN_DEAD);
        warren_close(k);
    } else if (argc == 3 && (!strcmp(argv[1], "spawn") || !strcmp(argv[1], "kid"))) {
        warren_client *k;
        if (warren_connect(&k) != WARREN_OK) {
            fprintf(stderr, "live: %s\n", warren_last_error());
            return 1;
        }
        if (!strcmp(argv[1], "spawn"))
            spawn(k, argv[2]);
        else
            kid(k, argv[2]);
        warren_close(k);
    } else {
        fprintf(stderr, "usage: live ops | call TARGET BODY | down TARGET | fake-version | not-a-socket | "
                        "spawn TEMPLATE | kid WORD\n");
        return 2;
    }
    fprintf(stderr, "live %s: %d checks, %d failures\n", argv[1], checks, failures);
    return failures != 0;
}
