/* Conformance of libwarren against crates/warren-proto/tests/vectors.txt: every `vector` entry
 * decodes and encodes back to exactly its bytes, every `invalid` entry is rejected.
 *
 *   cc -o vectors vectors.c -I include -L lib -lwarren && ./vectors vectors.txt
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <warren.h>

static uint8_t packet[2 << 20];
static uint8_t again[2 << 20];

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int failures = 0, checked_valid = 0, checked_invalid = 0;

static void check(int valid, const char *name, int dir, size_t len) {
    size_t out_len = 0;
    int st = warren_packet_roundtrip(dir, packet, len, again, sizeof again, &out_len);
    if (valid) {
        checked_valid++;
        if (st != WARREN_OK) {
            fprintf(stderr, "FAIL %s: does not decode: %s\n", name, warren_last_error());
            failures++;
        } else if (out_len != len || memcmp(packet, again, len) != 0) {
            fprintf(stderr, "FAIL %s: re-encodes to other bytes (%zu, not %zu)\n", name, out_len, len);
            failures++;
        }
    } else {
        checked_invalid++;
        if (st != WARREN_E_DECODE) {
            fprintf(stderr, "FAIL %s: accepted (status %s)\n", name, warren_status_name(st));
            failures++;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: vectors vectors.txt\n"); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    char line[1 << 16], name[256] = "";
    int in_entry = 0, valid = 0, dir = 0;
    size_t len = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[32], d[32], n[256];
        if (line[0] != ' ' && line[0] != '\t') {
            if (in_entry) check(valid, name, dir, len);
            in_entry = 0;
            if (sscanf(line, "%31s %255s %31s", kind, n, d) == 3 &&
                (!strcmp(kind, "vector") || !strcmp(kind, "invalid"))) {
                in_entry = 1;
                valid = !strcmp(kind, "vector");
                dir = !strcmp(d, "response");
                snprintf(name, sizeof name, "%s", n);
                len = 0;
            }
            continue;
        }
        if (!in_entry) continue;
        for (char *p = line; *p && *p != '#'; p++) {
            if (isspace((unsigned char)*p)) continue;
            int hi = hexval(p[0]), lo = p[1] ? hexval(p[1]) : -1;
            if (hi < 0 || lo < 0) { fprintf(stderr, "bad hex in %s\n", name); return 2; }
            if (len >= sizeof packet) { fprintf(stderr, "%s too long\n", name); return 2; }
            packet[len++] = (uint8_t)(hi << 4 | lo);
            p++;
        }
    }
    if (in_entry) check(valid, name, dir, len);
    fclose(f);
    printf("vectors: %d valid and %d invalid entries checked, %d failures\n", checked_valid,
           checked_invalid, failures);
    return failures != 0 || checked_valid == 0 || checked_invalid == 0;
}
