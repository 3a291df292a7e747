/*
 * Interleaved A/B timing of whole commands: each round starts every command once, in turn (the
 * order reversed every other round), so that load drifting on a shared machine hits all of them
 * alike. Prints each command's median, mean, p10 and p90 wall time (fork + exec + wait), in ms.
 * Used for the start-up A/Bs of BENCHMARKS.md (issue 13, third session).
 *
 *   cc -O2 -o /tmp/interleave bench/interleave.c
 *   /tmp/interleave 300 /path/warren-old run --rootfs R -- /bin/true :: \
 *       /path/warren-new run --rootfs R -- /bin/true :: \
 *       /usr/bin/bwrap --unshare-all --ro-bind R / --proc /proc --dev /dev /bin/true
 *
 * Words of the form VAR=value before a command's path set that variable for it alone. Standard
 * output of the commands goes to /dev/null; a command that fails stops the run. Ten warm-up
 * rounds are not counted.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	if (argc < 3) {
		fprintf(stderr, "usage: %s ROUNDS CMD... [:: CMD...]...\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[1]), nc = 0;
	char **cmds[16];
	cmds[nc++] = argv + 2;
	for (int i = 2; i < argc && nc < 16; i++)
		if (!strcmp(argv[i], "::")) {
			argv[i] = NULL;
			cmds[nc++] = argv + i + 1;
		}
	double *t[16];
	for (int c = 0; c < nc; c++)
		t[c] = calloc(n, sizeof(double));
	for (int i = -10; i < n; i++)
		for (int k = 0; k < nc; k++) {
			int c = (i & 1) ? nc - 1 - k : k;
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
			waitpid(p, &st, 0);
			double b = now_ms();
			if (!WIFEXITED(st) || WEXITSTATUS(st)) {
				fprintf(stderr, "command %d failed (status %d)\n", c, st);
				return 1;
			}
			if (i >= 0)
				t[c][i] = b - a;
		}
	for (int c = 0; c < nc; c++) {
		double s = 0;
		for (int i = 0; i < n; i++)
			s += t[c][i];
		qsort(t[c], n, sizeof(double), cmp);
		printf("cmd%d median %.3f mean %.3f p10 %.3f p90 %.3f\n", c, t[c][n / 2], s / n,
		       t[c][n / 10], t[c][n * 9 / 10]);
	}
	return 0;
}
