/* PID 1 of a test container that behaves like nginx or redis.
 *
 * Like their setproctitle, it overwrites the memory of its argv and
 * environ strings with a process title, so /proc/<pid>/environ no longer
 * shows the environment it was started with; like gosu in redis's
 * entrypoint, it then drops its privileges (to nobody, no supplementary
 * groups). Prints "retitled" and sleeps until killed. */
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    static const char title[] = "retitle: master process";
    char *start = argv[0];
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    for (char **e = environ; *e != NULL; e++) {
        char *after = *e + strlen(*e) + 1;
        if (after > end) {
            end = after;
        }
    }
    size_t area = (size_t)(end - start);
    memset(start, 0, area);
    memcpy(start, title, sizeof title < area ? sizeof title : area - 1);
    environ = NULL;
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
        perror("retitle: dropping privileges");
        return 1;
    }
    printf("retitled\n");
    fflush(stdout);
    for (;;) {
        pause();
    }
}
