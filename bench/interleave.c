/*
 * Interleaved A/B timing of whole commands: each round starts every command once, in turn (the
 * order reversed every other round), so that load drifting on a shared machine hits all of them
 * alike. Prints each command's median, mean, p10 and p90 wall time (fork + exec + wait), in ms.
 * Used for the start-up A/Bs of BENCHMARKS.md (issue 13, third session).
 *
 * With `-r SEED`, each round runs the commands in an order of its own instead, drawn from a
 * generator seeded with SEED (the same seed, the same orders). A command's time includes the
 * work its predecessor left to the kernel's workers (a network namespace's teardown, RCU
 * callbacks, cgroup release) running on the other CPU; in the fixed order every command has
 * the same two predecessors all run long, which moved single medians by up to 0.3 ms here
 * (BENCHMARKS.md, "Issue 13, eighth session"). Shuffled, each has every other as predecessor
 * in turn.
 *
 *   cc -O2 -o /tmp/interleave bench/interleave.c
 *   /tmp/interleave 300 /path/warren-old run --rootfs R -- /bin/true :: \
 *       /path/warren-new run --rootfs R -- /bin/true :: \
 *       /usr/bin/bwrap --unshare-all --ro-bind R / --proc /proc --dev /dev /bin/true
 *
 * Words of the form VAR=value before a command's path set that variable for it alone. Standard
 * output of the commands goes to /dev/null; a command that fails stops the run. Ten warm-up
 * rounds are not counted.
 *
 * With `-o FILE` first, it also writes every time to FILE as JSON in hyperfine's `--export-json`
 * shape (`{"results": [{"command", "times" (s), "user", "system" (mean s)}]}`), which is how
 * bench/startup.sh uses it; `-n NAME` at the start of a command names it there (default: its
 * path). Names must not need JSON escaping beyond what they hold (no quote or backslash).
 *
 *   /tmp/interleave -o out.json 200 -n "warren busybox" /path/warren run ... :: -n bwrap ...
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	int shuffled = 0;
	unsigned long long seed = 0;
	while (argc > 2 && (!strcmp(argv[1], "-o") || !strcmp(argv[1], "-r"))) {
		if (!strcmp(argv[1], "-o")) {
			json = argv[2];
		} else {
			char *end;
			seed = strtoull(argv[2], &end, 10);
			if (!*argv[2] || *end) {
				fprintf(stderr, "interleave: -r takes a number (the seed), not %s\n",
					argv[2]);
				return 2;
			}
			shuffled = 1;
		}
		argv += 2;
		argc -= 2;
	}
	if (argc < 3) {
		fprintf(stderr,
			"usage: %s [-o JSON] [-r SEED] ROUNDS [-n NAME] CMD... [:: [-n NAME] CMD...]...\n",
			argv[0]);
		return 2;
	}
	int n = atoi(argv[1]), nc = 0;
	if (n < 1) {
		fprintf(stderr, "interleave: ROUNDS must be a positive number, not %s\n", argv[1]);
		return 2;
	}
	char **cmds[16];
	const char *names[16];
	cmds[nc++] = argv + 2;
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "::")) {
			if (nc == 16) {
				fprintf(stderr, "interleave: at most 16 commands\n");
				return 2;
			}
			argv[i] = NULL;
			cmds[nc++] = argv + i + 1;
		}
	for (int c = 0; c < nc; c++) {
		names[c] = NULL;
		if (cmds[c][0] && !strcmp(cmds[c][0], "-n") && cmds[c][1]) {
			names[c] = cmds[c][1];
			cmds[c] += 2;
		}
		if (!cmds[c][0]) {
			fprintf(stderr, "interleave: command %d is empty\n", c);
			return 2;
		}
	}
	double *t[16], user[16] = {0}, sys[16] = {0};
	for (int c = 0; c < nc; c++)
		t[c] = calloc(n, sizeof(double));
	/* splitmix64: a small generator whose sequence depends on the seed alone. */
	unsigned long long state = seed;
	int order[16];
	for (int i = -10; i < n; i++) {
		for (int k = 0; k < nc; k++)
			order[k] = (i & 1) ? nc - 1 - k : k;
		for (int k = nc - 1; shuffled && k > 0; k--) {
			unsigned long long z = (state += 0x9e3779b97f4a7c15ULL);
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
			z ^= z >> 31;
			int j = (int)(z % (unsigned long long)(k + 1));
			int tmp = order[k];
			order[k] = order[j];
			order[j] = tmp;
		}
		for (int k = 0; k < nc; k++) {
			int c = order[k];
			double a = now_ms();
			pid_t p = fork();
			if (p == 0) {
				char **v = cmds[c];
				while (*v && (*v)[0] != '/' && strchr(*v, '='))
					putenv(*v++);
				int fd = open("/dev/null", O_WRONLY);
				dup2(fd, 1);
				execv(v[0], v);
				_exit(127);
			}
			int st;
			struct rusage ru;
			wait4(p, &st, 0, &ru);
			double b = now_ms();
			if (!WIFEXITED(st) || WEXITSTATUS(st)) {
				fprintf(stderr, "command %d failed (status %d)\n", c, st);
				return 1;
			}
			if (i >= 0) {
				t[c][i] = b - a;
				user[c] += ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
				sys[c] += ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
			}
		}
	}
	FILE *out = NULL;
	if (json) {
		out = fopen(json, "w");
		if (!out) {
			perror(json);
			return 1;
		}
		fprintf(out, "{\"results\": [");
	}
	for (int c = 0; c < nc; c++) {
		if (out) {
			fprintf(out, "%s\n {\"command\": \"", c ? "," : "");
			if (names[c])
				fputs(names[c], out);
			else
				for (char **v = cmds[c]; *v; v++)
					fprintf(out, "%s%s", v == cmds[c] ? "" : " ", *v);
			fprintf(out, "\", \"user\": %.9f, \"system\": %.9f, \"times\": [",
				user[c] / n, sys[c] / n);
			for (int i = 0; i < n; i++)
				fprintf(out, "%s%.9f", i ? ", " : "", t[c][i] / 1e3);
			fprintf(out, "]}");
		}
		double s = 0;
		for (int i = 0; i < n; i++)
			s += t[c][i];
		qsort(t[c], n, sizeof(double), cmp);
		printf("%s median %.3f mean %.3f p10 %.3f p90 %.3f\n", names[c] ? names[c] : cmds[c][0],
		       t[c][n / 2], s / n, t[c][n / 10], t[c][n * 9 / 10]);
	}
	if (out) {
		fprintf(out, "\n]}\n");
		if (fclose(out)) {
			perror(json);
			return 1;
		}
	}
	return 0;
}
