/*
 * cni-logger-shim: what a container runtime executes as the `logger` CNI plugin in thick mode.
 *
 * It hands this invocation (environment and stdin) over a unix socket to the agent that lives in the
 * node's `cni-logger install --watch --agent` process, and relays the agent's stdout, stderr and exit
 * status byte for byte. Whenever the agent cannot answer (absent, refusing, too slow to greet, dying
 * mid-request, answering garbage) it execs the in-process plugin (`python -IS -c PROGRAM`) with the same
 * environment and the same stdin instead: a pod never fails because of the agent.
 *
 * Why C, static and this small: it is on every pod's start path. An interpreter's own start-up (~9 ms
 * for the bundle's CPython) would cost more than the whole thick-mode request; a static executable needs
 * no dynamic loader, no shared library look-ups and no file reads. Its configuration (socket, fallback
 * interpreter and program, timeouts) is patched into the binary itself by the installer
 * (cni_logger/install/shim.py), so one file, replaced atomically, is the whole plugin, and the install
 * self-check executes exactly what the runtime will.
 *
 * Wire protocol v1 (the agent side is cni_logger's agent):
 *   agent -> shim  greeting: 'R' (go on) or 'N' + reason text (refused)
 *   shim -> agent  "CNIL1", then 6 fields, each u32 little-endian length + bytes:
 *                  request id (UUID v4, 36 bytes), pid, parent pid, node name,
 *                  environment (each entry + NUL, as /proc/PID/environ), stdin
 *   agent -> shim  'A', u32 exit status, u32 length + stdout, u32 length + stderr
 * The request id becomes the event's event.id on both paths: when the shim falls back after the agent
 * may already have had the whole request (MAYBE=1), the fallback can tell a recorded event by its id.
 *
 * Fallback: execve(python, [python, -IS, -c, program, ID, REASON, MAYBE, PREFIX], environ), stdin as
 * the shim received it (a memfd with the bytes it read, or fd 0 untouched when it did not read it all;
 * PREFIX "3" then says fd 3 holds the bytes it had read, "-" that there are none).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- the config area ------------------------------------------------------------------------------------
 * The installer finds the marker in the file (it must occur exactly once: the marker text appears nowhere
 * else in this source, and sizeof below does not emit it) and rewrites the bytes after it with entries
 * `key=value\0`, ended by an empty entry. Non-static and non-const so it stays a real array in .data. */
#define MARKER "CNI-LOGGER-SHIM-CONFIG/1\n"
#define MARKER_LEN (sizeof(MARKER) - 1)
#define CONFIG_SIZE 8192
_Static_assert(MARKER_LEN == 25, "the marker is 25 bytes, newline included (cni_logger/install/shim.py)");
char cni_logger_shim_config[CONFIG_SIZE] = MARKER;

/* The compiler saw the area all zeros after the marker; reading its address through a volatile object
 * stops it from folding "not configured" into the code. */
static char *volatile config_area = cni_logger_shim_config;

#define MAX_STDIN (16u * 1024 * 1024 + 1) /* one past the plugin's limit: the agent answers "too large" */
#define MAX_OUT (64u * 1024 * 1024)       /* a reply length above this is garbage, not a reply */
#define PIPE_FIT (64u * 1024)             /* what a pipe surely holds without a reader (Linux default) */

/* stdin, read whole before connecting (the agent needs it in the request, the fallback from a memfd).
 * In .bss: costs nothing until touched, and a CNI config touches a page or two. */
static char in_buf[MAX_STDIN];
static size_t in_len;
/* The reply, when it fits; a larger one gets an mmap of its exact size. */
static char reply_scratch[64 * 1024];

struct config {
    const char *socket, *python, *program;
    int connect_ms, reply_ms, stdin_ms;
};

static const char NOT_CONFIGURED[] =
    "{\"cniVersion\":\"1.1.0\",\"code\":100,\"msg\":\"cni-logger shim not configured\","
    "\"details\":\"write it with cni-logger install --agent\"}\n";

/* ---- small helpers (no stdio: nothing buffered, nothing to flush before _exit) --------------------------- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(int64_t deadline) {
    int64_t d = deadline - now_ms();
    return d <= 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
}

/* poll one fd until `events` or the deadline: 1 ready (or hung up / in error: the next read or write
 * says which), 0 timed out, -1 poll failed. */
static int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms_left(deadline));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Write everything, retrying EINTR and waiting out EAGAIN (fd 1 may share a non-blocking file
 * description with the runtime). 0 done, -1 failed. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, -1) < 0 && errno != EINTR) return -1;
        } else if (!(w < 0 && errno == EINTR)) {
            return -1;
        }
    }
    return 0;
}

/* Decimal digits only, at most a day; anything else keeps the default. */
static int parse_ms(const char *v, int dflt) {
    long n = 0;
    if (!*v) return dflt;
    for (; *v; v++) {
        if (*v < '0' || *v > '9') return dflt;
        n = n * 10 + (*v - '0');
        if (n > 86400000L) return dflt;
    }
    return (int)n;
}

static int load_config(struct config *c) {
    const char *p = config_area + MARKER_LEN, *end = config_area + CONFIG_SIZE;
    *c = (struct config){.socket = "", .connect_ms = 200, .reply_ms = 3000, .stdin_ms = 2000};
    while (p < end && *p) {
        const char *z = memchr(p, 0, (size_t)(end - p));
        if (!z) break; /* an unterminated last entry: not the installer's work, ignore it */
        const char *eq = memchr(p, '=', (size_t)(z - p));
        if (eq) {
            size_t k = (size_t)(eq - p);
            const char *v = eq + 1;
            if (k == 6 && !memcmp(p, "socket", 6)) c->socket = v;
            else if (k == 6 && !memcmp(p, "python", 6)) c->python = v;
            else if (k == 7 && !memcmp(p, "program", 7)) c->program = v;
            else if (k == 10 && !memcmp(p, "connect_ms", 10)) c->connect_ms = parse_ms(v, 200);
            else if (k == 8 && !memcmp(p, "reply_ms", 8)) c->reply_ms = parse_ms(v, 3000);
            else if (k == 8 && !memcmp(p, "stdin_ms", 8)) c->stdin_ms = parse_ms(v, 2000);
            /* unknown keys: ignored, so a newer installer can add some */
        }
        p = z + 1;
    }
    return c->python && *c->python && c->program && *c->program;
}

/* ---- the request id --------------------------------------------------------------------------------------- */

/* A v4 UUID. GRND_NONBLOCK: early in boot, before the kernel's pool is ready, getrandom() would block a
 * pod's start; /dev/urandom never blocks. The clock/pid mix only if both fail (no uniqueness guarantee
 * then, but the id is only a tag to tell a request's event apart, never a secret). */
static void make_id(char out[37]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, GRND_NONBLOCK);
        if (n > 0) got += (size_t)n;
        else if (!(n < 0 && errno == EINTR)) break;
    }
    if (got < sizeof b) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            while (got < sizeof b) {
                ssize_t n = read(fd, b + got, sizeof b - got);
                if (n > 0) got += (size_t)n;
                else if (!(n < 0 && errno == EINTR)) break;
            }
            close(fd);
        }
    }
    if (got < sizeof b) {
        struct timespec r, m;
        clock_gettime(CLOCK_REALTIME, &r);
        clock_gettime(CLOCK_MONOTONIC, &m);
        uint64_t x = ((uint64_t)r.tv_sec << 32) ^ (uint64_t)r.tv_nsec ^ ((uint64_t)m.tv_nsec << 20) ^
                     ((uint64_t)getpid() << 40);
        for (; got < sizeof b; got++) { /* splitmix64 steps */
            x += 0x9e3779b97f4a7c15ULL;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            b[got] = (unsigned char)(z ^ (z >> 31));
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = 0;
}

/* ---- failing without the plugin ------------------------------------------------------------------------- */

/* Append to a fixed buffer, truncating (the messages below are bounded by the config area's size). */
struct out {
    char buf[CONFIG_SIZE * 6 + 512];
    size_t n;
};

static void put(struct out *o, const char *s, size_t n) {
    if (n > sizeof o->buf - o->n) n = sizeof o->buf - o->n;
    memcpy(o->buf + o->n, s, n);
    o->n += n;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* A JSON string's content: quote, backslash and control characters escaped. */
static void put_json(struct out *o, const char *s) {
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            put(o, e, 2);
        } else if (ch < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            put(o, e, 6);
        } else {
            put(o, s, 1);
        }
    }
}

/* The in-process plugin cannot be reached (execve failed, or stdin could not be handed to it). DEL must
 * always succeed (a runtime retries a failed DEL forever and the pod never goes away): one line on stderr,
 * exit 0. Anything else: a CNI error on stdout, exit 1. `subject` (may be NULL) names what failed. */
static __attribute__((noreturn)) void fail(const char *what, const char *subject, int err) {
    static struct out o;
    const char *cmd = getenv("CNI_COMMAND");
    const char *why = strerror(err);
    if (cmd && !strcmp(cmd, "DEL")) {
        puts_(&o, "cni-logger: ");
        puts_(&o, what);
        if (subject) {
            puts_(&o, " ");
            puts_(&o, subject);
        }
        puts_(&o, ": ");
        puts_(&o, why);
        puts_(&o, "; DEL answered as succeeded\n");
        write_all(2, o.buf, o.n);
        _exit(0);
    }
    puts_(&o, "{\"cniVersion\":\"1.1.0\",\"code\":100,\"msg\":\"cni-logger: ");
    put_json(&o, what);
    puts_(&o, "\",\"details\":\"");
    if (subject) {
        put_json(&o, subject);
        puts_(&o, ": ");
    }
    put_json(&o, why);
    puts_(&o, "\"}\n");
    write_all(1, o.buf, o.n);
    _exit(1);
}

/* ---- the fallback ------------------------------------------------------------------------------------------ */

/* An fd (no CLOEXEC, offset 0) holding exactly p[0..n): a memfd; if the kernel has none (before 3.17,
 * or seccomp), a pipe when the bytes fit in its buffer (write end closed: the reader sees EOF after them),
 * else an unnamed O_TMPFILE file in /tmp, then /dev/shm. -1 with errno when all fail. */
static int bytes_fd(const char *p, size_t n) {
    int fd = memfd_create("cni-logger-stdin", 0);
    if (fd >= 0) {
        if (write_all(fd, p, n) == 0 && lseek(fd, 0, SEEK_SET) == 0) return fd;
        close(fd);
    }
    if (n <= PIPE_FIT) {
        int pp[2];
        if (pipe2(pp, 0) == 0) {
            /* Non-blocking on the write end only (its own file description): a smaller pipe buffer than
             * expected makes the write fail here instead of hanging the shim. */
            int ok = fcntl(pp[1], F_SETFL, O_NONBLOCK) == 0;
            size_t done = 0;
            while (ok && done < n) {
                ssize_t w = write(pp[1], p + done, n - done);
                if (w > 0) done += (size_t)w;
                else if (!(w < 0 && errno == EINTR)) ok = 0;
            }
            close(pp[1]);
            if (ok) return pp[0];
            close(pp[0]);
        }
    }
    static const char *const dirs[] = {"/tmp", "/dev/shm"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        fd = open(dirs[i], O_TMPFILE | O_RDWR, 0600);
        if (fd < 0) continue;
        if (write_all(fd, p, n) == 0 && lseek(fd, 0, SEEK_SET) == 0) return fd;
        close(fd);
    }
    if (errno == 0) errno = EIO;
    return -1;
}

/* Put `fd` at `target` (closing the original) unless it is there already. */
static int move_fd(int fd, int target) {
    if (fd == target) return 0;
    if (dup2(fd, target) < 0) return -1;
    close(fd);
    return 0;
}

enum stdin_state {
    STDIN_UNREAD, /* off, or a tty: fd 0 untouched, nothing read */
    STDIN_PREFIX, /* read timed out or failed: fd 0 left as it is, the bytes read so far go on fd 3 */
    STDIN_WHOLE,  /* read to EOF (or to MAX_STDIN): fd 0 becomes an fd holding exactly those bytes */
};

static __attribute__((noreturn)) void fallback(const struct config *c, const char *id, const char *reason,
                                                int maybe, enum stdin_state st, int sock) {
    if (sock >= 0) close(sock); /* first: the agent must see the connection end, and fds may be reused */
    const char *prefix = "-";
    if (st == STDIN_WHOLE) {
        int fd = bytes_fd(in_buf, in_len);
        if (fd < 0 || move_fd(fd, 0) < 0) fail("cannot hand stdin to the in-process plugin", NULL, errno);
    } else if (st == STDIN_PREFIX && in_len > 0) {
        int fd = bytes_fd(in_buf, in_len);
        if (fd < 0 || move_fd(fd, 3) < 0) fail("cannot hand stdin to the in-process plugin", NULL, errno);
        prefix = "3";
    }
    char *argv[] = {(char *)c->python, "-IS", "-c", (char *)c->program, (char *)id, (char *)reason,
                    maybe ? "1" : "0", (char *)prefix, NULL};
    signal(SIGPIPE, SIG_DFL); /* an ignored signal stays ignored across execve: give the plugin the default */
    execve(c->python, argv, environ);
    int err = errno;
    signal(SIGPIPE, SIG_IGN);
    fail("cannot run the in-process plugin", c->python, err);
}

/* ---- the agent ------------------------------------------------------------------------------------------- */

/* stdin until EOF, at most MAX_STDIN bytes, within ms. 0 done (EOF or full), -1 timed out or failed. The
 * file description's flags are not touched: it is shared with the runtime, and the fallback may go on
 * reading it. */
static int read_stdin(int ms) {
    int64_t deadline = now_ms() + ms;
    while (in_len < MAX_STDIN) {
        if (wait_fd(0, POLLIN, deadline) <= 0) return -1;
        ssize_t n = read(0, in_buf + in_len, MAX_STDIN - in_len);
        if (n > 0) in_len += (size_t)n;
        else if (n == 0) return 0;
        else if (errno != EINTR && errno != EAGAIN) return -1;
    }
    return 0;
}

static const char *connect_reason(int err) {
    switch (err) {
    case ENOENT:
    case ENOTDIR: return "absent";
    case ECONNREFUSED: return "not-listening"; /* a socket file nobody listens on: a dead agent's */
    case EACCES:
    case EPERM: return "denied";
    case EAGAIN: return "busy"; /* the listen backlog is full */
    default: return "connect-error";
    }
}

/* Connect and take the greeting, all within connect_ms. NULL when the agent said 'R' (fd in *out),
 * else the fallback reason (*out is the socket to close, or -1). */
static const char *connect_agent(const struct config *c, int *out) {
    int64_t deadline = now_ms() + c->connect_ms;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(c->socket);
    *out = -1;
    if (n == 0) return "absent"; /* no socket configured: no agent */
    if (n >= sizeof a.sun_path) return "connect-error";
    memcpy(a.sun_path, c->socket, n);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return "connect-error";
    if (fd <= 2) { /* a runtime that closed 0-2: never let the socket pose as stdout */
        int f = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        if (f < 0) return "connect-error";
        fd = f;
    }
    *out = fd;
    if (connect(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1)) < 0) {
        int err = errno;
        if (err != EINPROGRESS && err != EINTR) return connect_reason(err);
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w == 0) return "slow";
        socklen_t len = sizeof err;
        if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return "connect-error";
        if (err) return connect_reason(err);
    }
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w == 0) return "slow";
        if (w < 0) return "closed";
        char g;
        ssize_t r = read(fd, &g, 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r != 1) return "closed";
        if (g == 'R') return NULL;
        if (g != 'N') return "closed";
        /* The agent's reason text (at most 4 KiB), taken as far as it has arrived, without waiting: the
         * fallback's arguments have no place for it, but a socket closed with unread data makes the agent
         * see ECONNRESET instead of the end of a refusal it chose. */
        char why[4096];
        size_t got = 0;
        while (got < sizeof why) {
            ssize_t k = recv(fd, why + got, sizeof why - got, MSG_DONTWAIT);
            if (k > 0) got += (size_t)k;
            else if (!(k < 0 && errno == EINTR)) break;
        }
        return "refused";
    }
}

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t put_field(unsigned char *h, size_t at, const void *p, size_t n) {
    put_u32(h + at, (uint32_t)n);
    memcpy(h + at + 4, p, n);
    return at + 4 + n;
}

static size_t utoa(char *o, unsigned long v) {
    char t[24];
    size_t n = 0;
    do t[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++) o[i] = t[n - 1 - i];
    return n;
}

/* writev everything, waiting (poll) when the socket is full. 0 sent, 1 deadline passed, -1 failed. */
static int send_all(int fd, struct iovec *iov, int cnt, int64_t deadline) {
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) return -1;
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w <= 0) return w == 0 ? 1 : -1;
            continue;
        }
        size_t k = (size_t)n;
        while (cnt > 0 && k >= iov->iov_len) {
            k -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= k;
        }
    }
    return 0;
}

/* The environment as one block, entries NUL-ended (the /proc/PID/environ layout). The kernel lays the
 * strings out exactly so, one after the other, and nothing here changes environ: the block is used in
 * place. Only if it is not contiguous (never seen; a setuid start's unsetenv would do it) is it copied. */
static const char *environ_block(size_t *len) {
    size_t total = 0;
    int contiguous = 1;
    char **e = environ;
    for (; e && *e; e++) {
        size_t l = strlen(*e) + 1;
        if (e[1] && e[1] != *e + l) contiguous = 0;
        total += l;
    }
    *len = total;
    if (total == 0 || contiguous) return total ? environ[0] : "";
    char *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    size_t at = 0;
    for (e = environ; *e; e++) {
        size_t l = strlen(*e) + 1;
        memcpy(m + at, *e, l);
        at += l;
    }
    return m;
}

/* Send the request and read the whole reply, within reply_ms (one deadline for both: an agent that
 * stops reading is as stuck as one that stops answering). Never shutdown(SHUT_WR): the agent takes a
 * half-closed connection as "the shim gave up". Returns only on failure, with the fallback reason and
 * *maybe = 1 when the agent may have the whole request (and so may have recorded it). */
static const char *exchange(const struct config *c, int fd, const char *id, int *maybe) {
    size_t env_len;
    const char *env = environ_block(&env_len);
    if (!env) return "connect-error"; /* no memory for a copy: nothing was sent, a clean fallback */

    struct utsname u;
    if (uname(&u) < 0) u.nodename[0] = 0;
    char pid[24], ppid[24];
    size_t pid_n = utoa(pid, (unsigned long)getpid()), ppid_n = utoa(ppid, (unsigned long)getppid());
    unsigned char head[5 + 4 + 36 + 4 + 24 + 4 + 24 + 4 + sizeof u.nodename + 4], tail[4];
    memcpy(head, "CNIL1", 5);
    size_t h = put_field(head, 5, id, 36);
    h = put_field(head, h, pid, pid_n);
    h = put_field(head, h, ppid, ppid_n);
    h = put_field(head, h, u.nodename, strnlen(u.nodename, sizeof u.nodename));
    put_u32(head + h, (uint32_t)env_len);
    h += 4;
    put_u32(tail, (uint32_t)in_len);
    struct iovec iov[] = {{head, h}, {(void *)env, env_len}, {tail, 4}, {in_buf, in_len}};

    int64_t deadline = now_ms() + c->reply_ms;
    *maybe = 1; /* from the first byte on, the agent may end up with all of it */
    int s = send_all(fd, iov, 4, deadline);
    if (s != 0) return s > 0 ? "timeout" : "died";

    /* 'A' status(4) len1(4) stdout len2(4) stderr: buffered whole, nothing written before it is. */
    char *rb = reply_scratch;
    size_t cap = sizeof reply_scratch, have = 0, need = 9, l1 = 0;
    int stage = 0;
    for (;;) {
        if (have >= 1 && rb[0] != 'A') return "garbled"; /* at once: no waiting for more of a wrong reply */
        while (have >= need) {
            if (stage == 0) {
                l1 = get_u32(rb + 5);
                if (l1 > MAX_OUT) return "garbled";
                need = 13 + l1;
                stage = 1;
            } else if (stage == 1) {
                uint32_t l2 = get_u32(rb + 9 + l1);
                if (l2 > MAX_OUT) return "garbled";
                need = 13 + l1 + l2;
                stage = 2;
            } else {
                /* complete */
                uint32_t l2 = get_u32(rb + 9 + l1);
                write_all(2, rb + 13 + l1, l2); /* errors ignored: the answer is on stdout */
                write_all(1, rb + 9, l1);
                _exit((int)get_u32(rb + 1));
            }
        }
        if (need > cap) { /* exact size: both lengths are known before their bytes are read */
            char *m = rb == reply_scratch
                          ? mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                          : mremap(rb, cap, need, MREMAP_MAYMOVE);
            if (m == MAP_FAILED) return "garbled";
            if (rb == reply_scratch) memcpy(m, rb, have);
            rb = m;
            cap = need;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w == 0) return "timeout";
        if (w < 0) return "died";
        ssize_t n = read(fd, rb + have, cap - have);
        if (n > 0) have += (size_t)n;
        else if (n == 0) return "died";
        else if (errno != EINTR && errno != EAGAIN) return "died";
    }
}

int main(void) {
    /* A runtime that stops reading must not kill the shim mid-answer: writes fail with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    struct config c;
    if (!load_config(&c)) {
        write_all(1, NOT_CONFIGURED, sizeof NOT_CONFIGURED - 1);
        return 1;
    }
    char id[37];
    make_id(id);

    const char *mode = getenv("CNI_LOGGER_SHIM");
    if (mode && !strcmp(mode, "inprocess")) fallback(&c, id, "off", 0, STDIN_UNREAD, -1);
    /* A person typing at a terminal: there is no EOF to wait for; the in-process plugin handles it. */
    if (isatty(0)) fallback(&c, id, "stdin", 0, STDIN_UNREAD, -1);
    if (read_stdin(c.stdin_ms) < 0) fallback(&c, id, "stdin", 0, STDIN_PREFIX, -1);

    int fd;
    const char *why = connect_agent(&c, &fd);
    if (why) fallback(&c, id, why, 0, STDIN_WHOLE, fd);
    int maybe = 0;
    why = exchange(&c, fd, id, &maybe); /* returns only on failure */
    fallback(&c, id, why, maybe, STDIN_WHOLE, fd);
}
