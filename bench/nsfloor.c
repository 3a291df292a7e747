/* The floor under a spawn cycle (issue 16): clone a child into new namespaces, let it exit at
 * once, wait for it; N times, one after the other. Prints cycles per second and the host's CPU
 * time per cycle (all CPUs, from /proc/stat, including the kernel workers that tear the
 * namespaces down, measured until 2 s after the last cycle).
 *
 *   cc -O2 -o /tmp/nsfloor bench/nsfloor.c
 *   /tmp/nsfloor 1000 user,pid,mount,uts,ipc,net,cgroup     # what every environment gets
 *   /tmp/nsfloor 1000 user,pid,mount,uts,ipc,cgroup         # without the network namespace
 *   /tmp/nsfloor 1000 net
 *   /tmp/nsfloor hold 1000 user,pid,mount,uts,ipc,net,cgroup   # memory of 1,000 live ones
 * `hold` keeps N children alive (each pauses in its namespaces) and prints the host's used
 * memory (MemTotal - MemAvailable) per child, 3 s after the last started, then ends them.
 * Run as root on a quiet machine. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char stack[1 << 16];

static int child(void *arg) {
	if (arg)
		pause();
	_exit(0);
}

/* MemTotal - MemAvailable, in KiB. */
static long long used_kib(void) {
	char line[256];
	long long total = -1, avail = -1, v;
	FILE *f = fopen("/proc/meminfo", "r");
	while (f && fgets(line, sizeof line, f)) {
		if (sscanf(line, "MemTotal: %lld kB", &v) == 1)
			total = v;
		if (sscanf(line, "MemAvailable: %lld kB", &v) == 1)
			avail = v;
	}
	if (f)
		fclose(f);
	if (total < 0 || avail < 0) {
		fprintf(stderr, "cannot read /proc/meminfo\n");
		exit(1);
	}
	return total - avail;
}

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Busy clock ticks of all CPUs (user, nice, system, irq, softirq). */
static long long busy(void) {
	long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (!f || fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
			 &v[3], &v[4], &v[5], &v[6], &v[7]) != 8) {
		perror("/proc/stat");
		exit(1);
	}
	fclose(f);
	return v[0] + v[1] + v[2] + v[5] + v[6];
}

int main(int argc, char **argv) {
	static const struct { const char *name; int flag; } known[] = {
		{"user", CLONE_NEWUSER}, {"pid", CLONE_NEWPID}, {"mount", CLONE_NEWNS},
		{"uts", CLONE_NEWUTS},   {"ipc", CLONE_NEWIPC}, {"net", CLONE_NEWNET},
		{"cgroup", CLONE_NEWCGROUP},
	};
	int hold = argc == 4 && strcmp(argv[1], "hold") == 0;
	if (argc != 3 && !hold) {
		fprintf(stderr, "usage: %s [hold] N NAMESPACE[,NAMESPACE...]\n", argv[0]);
		return 2;
	}
	argv += hold;
	int n = atoi(argv[1]), flags = 0;
	for (char *s = strtok(argv[2], ","); s; s = strtok(NULL, ",")) {
		size_t i;
		for (i = 0; i < sizeof known / sizeof known[0] && strcmp(s, known[i].name); i++)
			;
		if (i == sizeof known / sizeof known[0]) {
			fprintf(stderr, "unknown namespace %s\n", s);
			return 2;
		}
		flags |= known[i].flag;
	}
	if (hold) {
		static int pids[100000];
		if (n < 1 || n > 100000) {
			fprintf(stderr, "hold: N must be 1..100000\n");
			return 2;
		}
		sync();
		sleep(2);
		long long before = used_kib();
		for (int i = 0; i < n; i++) {
			pids[i] = clone(child, stack + sizeof stack, flags | SIGCHLD, "hold");
			if (pids[i] < 0) {
				perror("clone");
				n = i;
				break;
			}
		}
		sleep(3);
		long long after = used_kib();
		printf("%d live children: host used memory +%lld KiB, %.1f KiB per child\n", n,
		       after - before, (double)(after - before) / (n ? n : 1));
		for (int i = 0; i < n; i++) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
		return 0;
	}
	long long b0 = busy();
	double t0 = now();
	for (int i = 0; i < n; i++) {
		int pid = clone(child, stack + sizeof stack, flags | SIGCHLD, NULL);
		if (pid < 0) {
			perror("clone");
			return 1;
		}
		waitpid(pid, NULL, 0);
	}
	double t1 = now();
	sleep(2);
	long long b1 = busy();
	double tick_ms = 1000.0 / sysconf(_SC_CLK_TCK);
	printf("%d cycles in %.3f s: %.0f/s; host CPU %.2f ms per cycle\n", n, t1 - t0,
	       n / (t1 - t0), (b1 - b0) * tick_ms / n);
	return 0;
}
