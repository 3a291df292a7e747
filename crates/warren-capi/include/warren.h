/*
 * warren.h — the C interface of libwarren, the client of the Warren kernel.
 *
 * A program inside a Warren environment links libwarren (-lwarren: libwarren.so.0 or
 * libwarren.a) and talks to the kernel through the descriptor the environment inherits
 * (WARREN_FD, 3 when unset). Every operation of docs/protocol.md is here, in two shapes:
 *
 *   - blocking calls (warren_send, warren_recv, warren_lookup, ...): one request, its answer;
 *   - event-loop calls (warren_submit_*): queue a request without waiting and get its id;
 *     warren_flush sends the queued requests as one packet; when warren_fd() is readable,
 *     warren_process reads what is there and warren_next_completion hands out the answers
 *     (by id, in arrival order). Nothing in this shape blocks, so libuv, asyncio, tokio or a
 *     plain epoll loop integrates without threads. The two shapes may be mixed: answers a
 *     blocking call reads on the way are kept for warren_next_completion.
 *
 * The guide, with examples, is docs/c.md. The wire protocol is docs/protocol.md.
 *
 * STATUS. Every call that can fail returns an int status: WARREN_OK (0), a protocol error
 * code (the kernel refused: one of 1..14, 20, 40, 41, the codes of enum warren_status below
 * 1000; docs/protocol.md reserves 20..29 for attestation and 40..49 for spawning), or a
 * client-side failure (1000 and up). warren_status_name() names it; warren_last_error() gives
 * this thread's last failure message, with the kernel's detail.
 *
 * OWNERSHIP. Arguments are borrowed for the duration of the call only: libwarren copies what
 * it keeps. Objects a call returns through an out-parameter (warren_client, warren_delivery,
 * warren_batch, warren_identity, warren_spawned, quote buffers) belong to the caller, who frees
 * each with its warren_*_free function (or warren_close, warren_buffer_free) exactly once. Pointers returned
 * by accessors (bodies, names, headers, caps) belong to the object they come from and stay
 * valid until it is freed. Strings libwarren returns are NUL-terminated UTF-8. NULL
 * out-parameters are allowed (the value is discarded). Handles are never 0: where a handle
 * argument is optional, 0 means "none" (the default mailbox for a receive, no reply_to).
 *
 * THREADS. A warren_client is not thread-safe: use it from one thread at a time (it may move
 * between threads). Different clients are independent. Objects returned to the caller are
 * independent of the client and of each other. warren_last_error is per thread.
 * warren_connect succeeds once per process (it takes ownership of the inherited descriptor).
 *
 * PANICS. No Rust panic crosses this interface: a bug caught inside returns WARREN_E_INTERNAL
 * (in a build with panic=abort, as the release profile is, it aborts the process instead).
 */
#ifndef WARREN_H
#define WARREN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WARREN_VERSION_MAJOR 0
#define WARREN_VERSION_MINOR 1
#define WARREN_VERSION_PATCH 0

/* Rights (docs/protocol.md section 8). */
#define WARREN_RIGHT_SEND 0x1u
#define WARREN_RIGHT_GRANT 0x2u
#define WARREN_RIGHT_MONITOR 0x4u
#define WARREN_RIGHT_RECEIVE 0x8u
#define WARREN_RIGHT_SPAWN 0x10u /* version 3: spawn from a template */
#define WARREN_RIGHT_STOP 0x20u  /* version 3: stop an environment */

/* The default mailbox's handle in every environment's table. */
#define WARREN_DEFAULT_MAILBOX 1u

/* Protocol limits (docs/protocol.md section 11). */
#define WARREN_MAX_BODY 983040u
#define WARREN_MAX_HEADERS 32u
#define WARREN_MAX_HEADER_VALUE 1024u
#define WARREN_MAX_CAPS 16u
#define WARREN_MAX_BATCH 16384u
#define WARREN_MAX_NONCE 64u
#define WARREN_MAX_ATTEST_DATA 1024u

/* Timeouts are in milliseconds: negative waits forever, 0 does not wait. */
#define WARREN_FOREVER (-1)

enum warren_status {
    WARREN_OK = 0,
    /* The kernel's error codes (docs/protocol.md section 10). */
    WARREN_BAD_REQUEST = 1,
    WARREN_NO_SUCH_HANDLE = 2,
    WARREN_NO_RIGHT = 3,
    WARREN_REVOKED = 4,
    WARREN_EXPIRED = 5,
    WARREN_USED_UP = 6,
    WARREN_FULL = 7,
    WARREN_TIMEOUT = 8,
    WARREN_NOT_FOUND = 9,
    WARREN_DEAD = 10,
    WARREN_VERSION = 11,
    WARREN_TOO_LARGE = 12,
    WARREN_UNAVAILABLE = 13,
    WARREN_QUOTA = 14, /* answered only on protocol version 3 */
    WARREN_ATTEST_FAILED = 20,
    WARREN_SPAWN_FAILED = 40, /* protocol version 3: the child could not be started */
    WARREN_NOT_ALLOWED = 41,  /* protocol version 3: the template does not allow it */
    /* Client-side failures. */
    WARREN_E_IO = 1000,          /* a system call on the connection failed */
    WARREN_E_CLOSED = 1001,      /* the kernel closed the connection */
    WARREN_E_DECODE = 1002,      /* undecodable bytes from the kernel: stop using the client */
    WARREN_E_ENCODE = 1003,      /* the request exceeds a protocol limit; nothing was sent */
    WARREN_E_UNEXPECTED = 1004,  /* an answer the request does not expect */
    WARREN_E_NO_CONNECTION = 1005, /* WARREN_FD is not a usable kernel connection */
    WARREN_E_INVALID = 1006,     /* a bad argument (NULL, not UTF-8, ...) */
    WARREN_E_WOULD_BLOCK = 1007, /* event-loop calls: nothing to do without blocking */
    WARREN_E_INTERNAL = 1008,    /* a bug in libwarren */
    WARREN_E_UNSUPPORTED = 1009  /* the agreed protocol version lacks the operation */
};

/* A connection to the kernel. */
typedef struct warren_client warren_client;
/* A received message. */
typedef struct warren_delivery warren_delivery;
/* The messages one batch receive took. */
typedef struct warren_batch warren_batch;
/* A Whoami answer. */
typedef struct warren_identity warren_identity;
/* A Spawned answer (version 3): free with warren_spawned_free. */
typedef struct warren_spawned warren_spawned;

/* Resource limits for a spawn or a restricted SPAWN handle; each field 0 = none asked (the
 * ceiling). */
typedef struct warren_limits {
    uint64_t memory;     /* bytes */
    uint64_t pids;       /* processes and threads */
    uint64_t cpus;       /* millionths of a cpu (500000 = half a cpu) */
    uint64_t tmpfs_size; /* bytes of /tmp */
} warren_limits;

/* One variable a spawn sets (NUL-terminated strings). */
typedef struct warren_env_var {
    const char *name;
    const char *value;
} warren_env_var;

/* One initial name of a child: the spawner's `handle` installed in the child's table under
 * `name` (NUL-terminated). */
typedef struct warren_spawn_name {
    const char *name;
    uint32_t handle;
} warren_spawn_name;

/* A Spawn request (docs/protocol.md section 16). Every pointer is borrowed for the call only;
 * a list may be NULL when its count is 0. */
typedef struct warren_spawn_request {
    uint32_t handle;                /* a handle with SPAWN on the template */
    const char *suffix;             /* the child is TEMPLATE-SUFFIX; NULL: the kernel numbers it */
    const char *const *args;        /* appended to the template's command (if it has args) */
    size_t n_args;
    const warren_env_var *env;      /* only variables the template's env_allow lists */
    size_t n_env;
    const warren_limits *limits;    /* NULL = the ceilings */
    bool detach;                    /* outlive the spawner (if the template has detach) */
    const warren_spawn_name *names; /* the child's initial names (handle needs GRANT) */
    size_t n_names;
} warren_spawn_request;

/* A header: a name (UTF-8, name_len bytes, need not be NUL-terminated) and a value. */
typedef struct warren_header {
    const char *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
} warren_header;

/* A message to send. Zero-initialise it and set what you need. */
typedef struct warren_message {
    const warren_header *headers; /* at most 32, or NULL with n_headers 0 */
    size_t n_headers;
    bool has_correlation;
    uint64_t correlation;
    const uint8_t *body;          /* at most WARREN_MAX_BODY bytes */
    size_t body_len;
    const uint32_t *caps;         /* handles to attach (each needs GRANT), at most 16 */
    size_t n_caps;
    uint32_t reply_to;            /* one of the sender's mailboxes to be answered at; 0 = none */
} warren_message;

/* A selective-receive filter; pass NULL for "any message". */
typedef struct warren_filter {
    bool has_correlation;
    uint64_t correlation;
    const char *header_name;      /* NULL = no header condition */
    size_t header_name_len;
    const uint8_t *header_value;
    size_t header_value_len;
} warren_filter;

/* One body of a batch send. */
typedef struct warren_bytes {
    const uint8_t *ptr;
    size_t len;
} warren_bytes;

/* ---------------------------------------------------------------------------------------- */
/* Connection. */

/* Connect through the descriptor named by WARREN_FD (3 when unset) and shake hands
 * (offering versions 1 to the highest libwarren speaks). *out_client is the caller's (warren_close). */
int warren_connect(warren_client **out_client);
/* The same through `fd`, whose ownership passes to libwarren (closed by warren_close, also
 * when the call fails): WARREN_E_NO_CONNECTION if it is not a socket. */
int warren_from_fd(int fd, warren_client **out_client);
/* Close the connection and free the client. NULL is ignored. */
void warren_close(warren_client *c);
/* The environment's name, as the kernel knows it (owned by the client). */
const char *warren_env(warren_client *c);
/* The protocol version agreed with the kernel (batches need 2). */
uint16_t warren_version(warren_client *c);
/* The connection's descriptor, for an event loop. Do not read, write or close it. */
int warren_fd(warren_client *c);

/* The name of a status ("ok", "revoked", "would-block", ...): a static string. */
const char *warren_status_name(int status);
/* This thread's last failure, with the kernel's detail; valid until its next failure. */
const char *warren_last_error(void);

/* ---------------------------------------------------------------------------------------- */
/* Blocking calls. */

/* Send `msg` through `handle` (needs SEND). wait: when the mailbox is full, wait for room
 * (else WARREN_FULL). */
int warren_send(warren_client *c, uint32_t handle, const warren_message *msg, bool wait);

/* Take the oldest message of `mailbox` (0 = the default one) matching `filter` (NULL = any),
 * waiting up to timeout_ms. *out_delivery is the caller's (warren_delivery_free). */
int warren_recv(warren_client *c, uint32_t mailbox, const warren_filter *filter,
                int64_t timeout_ms, warren_delivery **out_delivery);

/* A handle for the mailbox `name` ("env", "env/mailbox", "env@host"), where policy allows. */
int warren_lookup(warren_client *c, const char *name, uint32_t *out_handle,
                  uint32_t *out_rights);

/* This environment's name and handles. *out_identity is the caller's (warren_identity_free). */
int warren_whoami(warren_client *c, warren_identity **out_identity);

/* A weaker handle derived from `handle`: rights intersected; uses, expires_in_ms, badge are
 * optional (NULL = none). */
int warren_attenuate(warren_client *c, uint32_t handle, uint32_t rights, const uint32_t *uses,
                     const uint64_t *expires_in_ms, const uint64_t *badge,
                     uint32_t *out_handle, uint32_t *out_rights);

/* Revoke every capability derived from `handle`. */
int warren_revoke(warren_client *c, uint32_t handle);
/* Remove `handle` from this environment's table. */
int warren_drop(warren_client *c, uint32_t handle);
/* Be sent a down notice when the owner of `handle`'s mailbox ends; *out_reference is the
 * reference the notice carries (warren_delivery_down). */
int warren_monitor(warren_client *c, uint32_t handle, uint64_t *out_reference);
/* Create a mailbox (name NULL = unnamed); *out_handle has RECEIVE|SEND|GRANT|MONITOR. */
int warren_create_mailbox(warren_client *c, const char *name, uint32_t *out_handle);

/* A quote binding this environment's launch record and `data` to `nonce` (docs/attestation.md).
 * *out_quote (the JSON document, *out_quote_len bytes, not NUL-terminated) is the caller's
 * (warren_buffer_free with the same length). */
int warren_attest(warren_client *c, const uint8_t *nonce, size_t nonce_len, const uint8_t *data,
                  size_t data_len, uint8_t **out_quote, size_t *out_quote_len);
/* Free a buffer libwarren returned, with its length. NULL is ignored. */
void warren_buffer_free(uint8_t *p, size_t len);

/* Version 3 (spawn; WARREN_E_UNSUPPORTED on an older kernel). Create a child environment from
 * a template; *out_spawned (child name, mailbox and control handles, down reference) is the
 * caller's (warren_spawned_free). Errors: WARREN_SPAWN_FAILED, WARREN_NOT_ALLOWED, ... */
int warren_spawn(warren_client *c, const warren_spawn_request *req,
                 warren_spawned **out_spawned);
/* Stop the environment `handle` designates (needs STOP): SIGTERM, then SIGKILL after the
 * grace period, or SIGKILL at once with kill. Its end arrives as the down notice. */
int warren_stop(warren_client *c, uint32_t handle, bool kill);
/* A new SPAWN handle derived from `handle`: at most *share live children (NULL = no share of
 * its own) and the lower of its ceilings and `limits` (NULL = none lower). */
int warren_restrict(warren_client *c, uint32_t handle, const uint32_t *share,
                    const warren_limits *limits, uint32_t *out_handle, uint32_t *out_rights);

/* Send n plain bodies through `handle` in batch frames (version 2). With wait every body is
 * accepted; without, sending stops at the first frame not accepted whole. *out_accepted: how
 * many bodies were accepted (a prefix, in order), also when the call fails. */
int warren_send_batch(warren_client *c, uint32_t handle, const warren_bytes *bodies, size_t n,
                      bool wait, size_t *out_accepted);

/* Take up to max (1..16384) messages of `mailbox` (0 = default) in one request, waiting up to
 * timeout_ms for the first (version 2). *out_batch is the caller's (warren_batch_free). */
int warren_recv_batch(warren_client *c, uint32_t mailbox, uint32_t max, int64_t timeout_ms,
                      warren_batch **out_batch);

/* Send `msg` through `handle` (waiting for room) and take the next message of the default
 * mailbox, both requests in one packet: a server's reply-and-wait step. The return value is
 * the receive's status; *out_send_status the send's. */
int warren_send_recv(warren_client *c, uint32_t handle, const warren_message *msg,
                     int64_t timeout_ms, int *out_send_status, warren_delivery **out_delivery);

/* Request and reply (the convention of `warren-msg call`, docs/protocol.md): send `msg` through
 * `handle` with correlation id (pid << 32 | request id) and reply_to the default mailbox (both
 * replace the message's own), then wait up to timeout_ms for the message carrying that
 * correlation id. *out_reply is the caller's. */
int warren_call(warren_client *c, uint32_t handle, const warren_message *msg,
                int64_t timeout_ms, warren_delivery **out_reply);

/* Answer a request received with a reply handle: send `msg` through that handle carrying the
 * request's correlation id (replacing the message's own). The kernel removes the spent handle
 * by itself; if the send is refused, libwarren drops the handle and returns the refusal.
 * WARREN_E_INVALID if the request has no reply handle. */
int warren_reply(warren_client *c, const warren_delivery *request, const warren_message *msg);

/* ---------------------------------------------------------------------------------------- */
/* Event-loop calls. Each warren_submit_* queues one request frame and stores its id; nothing is
 * sent until warren_flush or warren_process (a queue reaching 1 MiB is sent at once, which may
 * block). Answers come out of warren_next_completion, each with its request's id. */

int warren_submit_send(warren_client *c, uint32_t handle, const warren_message *msg, bool wait,
                       uint32_t *out_id);
int warren_submit_recv(warren_client *c, uint32_t mailbox, const warren_filter *filter,
                       int64_t timeout_ms, uint32_t *out_id);
int warren_submit_lookup(warren_client *c, const char *name, uint32_t *out_id);
int warren_submit_whoami(warren_client *c, uint32_t *out_id);
int warren_submit_attenuate(warren_client *c, uint32_t handle, uint32_t rights,
                            const uint32_t *uses, const uint64_t *expires_in_ms,
                            const uint64_t *badge, uint32_t *out_id);
int warren_submit_revoke(warren_client *c, uint32_t handle, uint32_t *out_id);
int warren_submit_drop(warren_client *c, uint32_t handle, uint32_t *out_id);
int warren_submit_monitor(warren_client *c, uint32_t handle, uint32_t *out_id);
int warren_submit_create_mailbox(warren_client *c, const char *name, uint32_t *out_id);
/* One SendBatch frame of n bodies (1..16384, within 1 MiB); quiet: no answer at all when every
 * body is accepted. */
int warren_submit_send_batch(warren_client *c, uint32_t handle, const warren_bytes *bodies,
                             size_t n, bool wait, bool quiet, uint32_t *out_id);
int warren_submit_recv_batch(warren_client *c, uint32_t mailbox, uint32_t max,
                             int64_t timeout_ms, uint32_t *out_id);
int warren_submit_attest(warren_client *c, const uint8_t *nonce, size_t nonce_len,
                         const uint8_t *data, size_t data_len, uint32_t *out_id);
int warren_submit_spawn(warren_client *c, const warren_spawn_request *req, uint32_t *out_id);
int warren_submit_stop(warren_client *c, uint32_t handle, bool kill, uint32_t *out_id);
int warren_submit_restrict(warren_client *c, uint32_t handle, const uint32_t *share,
                           const warren_limits *limits, uint32_t *out_id);

/* Whether queued requests wait to be sent (then also watch warren_fd() for writability). */
bool warren_want_write(warren_client *c);
/* Send the queued requests as one packet without blocking; WARREN_E_WOULD_BLOCK when the socket
 * has no room (they stay queued). */
int warren_flush(warren_client *c);
/* Flush (a full socket is not an error here), then read every packet readable now without
 * blocking. *out_ready: how many answers wait in warren_next_completion. */
int warren_process(warren_client *c, size_t *out_ready);

/* What a completion carries. */
typedef enum warren_kind {
    WARREN_DONE_ERROR = 0,    /* status: the error code; detail: the kernel's text */
    WARREN_DONE_OK = 1,       /* Send, Revoke, Drop, Stop */
    WARREN_DONE_HANDLE = 2,   /* Lookup, Attenuate, CreateMailbox, Restrict: handle, rights */
    WARREN_DONE_MONITOR = 3,  /* Monitor: reference */
    WARREN_DONE_DELIVERY = 4, /* Recv (or a RecvBatch whose oldest message is not plain) */
    WARREN_DONE_BATCH = 5,    /* RecvBatch: batch */
    WARREN_DONE_IDENTITY = 6, /* Whoami: identity */
    WARREN_DONE_ACCEPTED = 7, /* SendBatch: accepted */
    WARREN_DONE_QUOTE = 8,    /* Attest: quote, quote_len */
    WARREN_DONE_SPAWNED = 9   /* Spawn: spawned */
} warren_kind;

/* One answer. delivery, batch, identity, quote and spawned (when not NULL) belong to the caller: free
 * them, or pass the completion to warren_completion_release. detail belongs to the client and
 * is valid until the next warren_next_completion on it. */
typedef struct warren_completion {
    uint32_t id;
    warren_kind kind;
    int status;
    uint32_t handle;
    uint32_t rights;
    uint64_t reference;
    uint32_t accepted;
    warren_delivery *delivery;
    warren_batch *batch;
    warren_identity *identity;
    uint8_t *quote;
    size_t quote_len;
    warren_spawned *spawned;
    const char *detail;
} warren_completion;

/* The oldest answer read and not yet collected, or WARREN_E_WOULD_BLOCK when none. */
int warren_next_completion(warren_client *c, warren_completion *out_completion);
/* Free what a completion still owns and set those pointers to NULL. NULL is ignored. */
void warren_completion_release(warren_completion *done);

/* ---------------------------------------------------------------------------------------- */
/* Accessors. Pointers they return belong to the object. */

void warren_delivery_free(warren_delivery *d);
const uint8_t *warren_delivery_body(const warren_delivery *d, size_t *out_len);
/* The sender as the kernel saw it (never forged): its environment's name and badge. */
const char *warren_delivery_from(const warren_delivery *d);
uint64_t warren_delivery_badge(const warren_delivery *d);
uint32_t warren_delivery_mailbox(const warren_delivery *d);
bool warren_delivery_correlation(const warren_delivery *d, uint64_t *out_correlation);
/* The one-shot reply handle, or 0. */
uint32_t warren_delivery_reply(const warren_delivery *d);
/* Whether this is a down notice (*out_reference: its monitor reference). */
bool warren_delivery_down(const warren_delivery *d, uint64_t *out_reference);
const uint32_t *warren_delivery_caps(const warren_delivery *d, size_t *out_n);
size_t warren_delivery_header_count(const warren_delivery *d);
bool warren_delivery_header(const warren_delivery *d, size_t i, const char **out_name,
                            size_t *out_name_len, const uint8_t **out_value,
                            size_t *out_value_len);

void warren_batch_free(warren_batch *b);
size_t warren_batch_count(const warren_batch *b);
uint32_t warren_batch_mailbox(const warren_batch *b);
/* When the oldest message was not plain it comes alone: that delivery (owned by the batch);
 * else NULL. */
const warren_delivery *warren_batch_delivery(const warren_batch *b);
/* Message i, oldest first: body, length, sender and badge. False when out of range. */
bool warren_batch_get(const warren_batch *b, size_t i, const uint8_t **out_body,
                      size_t *out_len, const char **out_from, uint64_t *out_badge);

/* The next message, oldest first, from a cursor the batch keeps (the cheapest way through a
 * batch): body, length, sender and badge. False after the last. */
bool warren_batch_next(warren_batch *b, const uint8_t **out_body, size_t *out_len,
                       const char **out_from, uint64_t *out_badge);

void warren_identity_free(warren_identity *i);
const char *warren_identity_env(const warren_identity *i);
size_t warren_identity_count(const warren_identity *i);
/* Entry k: handle, designation (for people, do not parse) and rights. */
bool warren_identity_entry(const warren_identity *i, size_t k, uint32_t *out_handle,
                           const char **out_designation, uint32_t *out_rights);

void warren_spawned_free(warren_spawned *s);
/* The child's environment name (TEMPLATE-SUFFIX). */
const char *warren_spawned_child(const warren_spawned *s);
/* A handle to the child's default mailbox (SEND|MONITOR). */
uint32_t warren_spawned_mailbox(const warren_spawned *s);
/* A handle to the child itself (STOP), for warren_stop. */
uint32_t warren_spawned_control(const warren_spawned *s);
/* The reference the down notice for the child will carry. */
uint64_t warren_spawned_reference(const warren_spawned *s);

/* ---------------------------------------------------------------------------------------- */
/* Conformance: decode a packet (direction 0 = client to kernel, 1 = kernel to client) with
 * libwarren's decoder and encode its frames again into out (cap bytes); *out_len is the length
 * needed. WARREN_E_DECODE for bytes the protocol rejects. */
int warren_packet_roundtrip(int direction, const uint8_t *packet, size_t len, uint8_t *out,
                            size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* WARREN_H */
