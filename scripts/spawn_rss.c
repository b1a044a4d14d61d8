/* Run one command and report its wall time and peak RSS, for scripts/benchmark.py.
 *
 * Usage: spawn_rss STDIN_FILE COMMAND [ARG...]
 * Prints "<wall ns> <peak RSS KiB> <exit status>" on stdout. The command's stdout and stderr go to
 * /dev/null. A small C parent matters: the kernel carries the forking process's resident size into
 * the child's ru_maxrss across exec, so measuring from a Python harness would report its size instead.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s STDIN_FILE COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        int in = open(argv[1], O_RDONLY), null = open("/dev/null", O_WRONLY);
        if (in < 0 || null < 0) _exit(126);
        dup2(in, 0); dup2(null, 1); dup2(null, 2);
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) { perror("wait4"); return 2; }
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long ns = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
    printf("%lld %ld %d\n", ns, usage.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}
