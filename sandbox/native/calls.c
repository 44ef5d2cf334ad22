/*
 * Extism calls on native threads.
 *
 * Why this exists: with Python worker threads, every plug-in call paid for the GIL twice on top of
 * the thread hop (the worker waited for the GIL to start the call, the event loop waited for it to
 * take the result while the worker tidied), and a small call cost 1.4-1.6x bare Extism. These
 * workers never hold the GIL: they take a job, run it in the copy's instance made ahead, write the
 * result into the job, wake the caller's event loop through an eventfd, then free the used instance and
 * make the next one. Python keeps every decision (which compiled copy, the grant, errors); this file
 * only runs calls. See sandbox/native/__init__.py for the Python side.
 *
 * Extism's library is the one the `extism_sys` wheel ships; its functions are looked up at run time
 * (xc_load), so this file builds without Extism's headers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "calls.h"

typedef void *(*new_from_compiled_fn)(const void *, char **);
typedef void (*error_free_fn)(char *);
typedef void (*free_fn)(void *);
typedef const void *(*cancel_handle_fn)(const void *);
typedef bool (*cancel_fn)(const void *);
typedef bool (*config_fn)(void *, const uint8_t *, uint64_t);
typedef bool (*exists_fn)(void *, const char *);
typedef int32_t (*call_fn)(void *, const char *, const uint8_t *, uint64_t);
typedef const char *(*error_fn)(void *);
typedef uint64_t (*output_length_fn)(void *);
typedef const uint8_t *(*output_data_fn)(void *);
typedef const uint8_t *(*id_fn)(void *);

static struct {
    new_from_compiled_fn new_from_compiled;
    error_free_fn error_free;
    free_fn plugin_free, compiled_free;
    cancel_handle_fn cancel_handle;
    cancel_fn cancel;
    config_fn config;
    exists_fn function_exists;
    call_fn call;
    error_fn error;
    output_length_fn output_length;
    output_data_fn output_data;
    id_fn id;
} extism;


/* An eventfd that wakes one event loop; shared by that loop's jobs, closed when the last lets go.
 * Not a pipe: a pipe's wake-up tells the scheduler the writer is about to sleep, so the loop is
 * queued behind the worker on its core, and the worker goes on to tidy (measured: 100-300 us more
 * per call when calls are spaced out). */
struct xc_notifier {
    int fd;
    atomic_int refs;
};

/* One compiled plug-in, the never-used instance made from it for its next call, and the call
 * waiting for the worker still tidying it. */
struct xc_copy {
    void *compiled;
    void *spare;
    char *spare_config;
    char *known_export;  /* the last function found exported: every instance of a copy has the same */
    uint64_t spare_config_length;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    bool busy, released;
    xc_job *waiting;
};

struct xc_job {
    xc_copy *copy;
    char *function;
    uint8_t *input;
    uint64_t input_length;
    char *config;
    uint64_t config_length;
    uint64_t max_output;
    bool prepare_next, notify_start;
    xc_notifier *notifier;

    pthread_mutex_t lock;
    atomic_int state;
    bool cancelled;
    bool abandoned;  /* Python has let go: whoever ends the job frees it and releases its copy */
    const void *cancel_handle;
    struct timespec started;
    xc_result result;
    xc_job *next;
};

/* A worker's note of the job it is on, on the worker's stack, so xc_pool_stop can cancel it. */
typedef struct serving {
    xc_job *job;  /* NULL from the moment the job ends (it may then be freed) */
    struct serving *prev, *next;
} serving;

struct xc_pool {
    pthread_mutex_t lock;
    pthread_cond_t work, served;
    xc_job *head, *tail;
    serving *serving;
    int threads, idle, queued, max_threads;
    bool shut_down;
};

static double elapsed_ms(const struct timespec *from) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - from->tv_sec) * 1e3 + (now.tv_nsec - from->tv_nsec) / 1e6;
}

static char *copy_bytes(const void *data, uint64_t length) {
    char *out = malloc(length + 1);
    if (out) {
        if (length) memcpy(out, data, length);
        out[length] = 0;
    }
    return out;
}

static bool shutting_down(xc_pool *p) {
    pthread_mutex_lock(&p->lock);
    bool down = p->shut_down;
    pthread_mutex_unlock(&p->lock);
    return down;
}

int xc_load(const char *library) {
    void *lib = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return -1;
#define FIND(field, name) if (!(*(void **)&extism.field = dlsym(lib, name))) return -2
    FIND(new_from_compiled, "extism_plugin_new_from_compiled");
    FIND(error_free, "extism_plugin_new_error_free");
    FIND(plugin_free, "extism_plugin_free");
    FIND(compiled_free, "extism_compiled_plugin_free");
    FIND(cancel_handle, "extism_plugin_cancel_handle");
    FIND(cancel, "extism_plugin_cancel");
    FIND(config, "extism_plugin_config");
    FIND(function_exists, "extism_plugin_function_exists");
    FIND(call, "extism_plugin_call");
    FIND(error, "extism_plugin_error");
    FIND(output_length, "extism_plugin_output_length");
    FIND(output_data, "extism_plugin_output_data");
    FIND(id, "extism_plugin_id");
#undef FIND
    return 0;
}

void xc_free(void *pointer) { free(pointer); }

/* ---- notifiers ---- */

xc_notifier *xc_notifier_new(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return NULL;
    xc_notifier *n = malloc(sizeof *n);
    if (!n) {
        close(fd);
        return NULL;
    }
    n->fd = fd;
    atomic_init(&n->refs, 1);
    return n;
}

int xc_notifier_fd(xc_notifier *n) { return n->fd; }

void xc_notifier_release(xc_notifier *n) {
    if (atomic_fetch_sub(&n->refs, 1) == 1) {
        close(n->fd);
        free(n);
    }
}

static void notify(xc_notifier *n) {
    /* EAGAIN means the counter is full, which is already a wake-up: nothing is lost. */
    uint64_t one = 1;
    ssize_t ignored = write(n->fd, &one, sizeof one);
    (void)ignored;
}

/* ---- compiled copies ---- */

xc_copy *xc_copy_new(void *compiled) {
    xc_copy *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->compiled = compiled;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle, NULL);
    return c;
}

static void copy_destroy(xc_copy *c) {
    if (c->spare) extism.plugin_free(c->spare);
    free(c->spare_config);
    free(c->known_export);
    extism.compiled_free(c->compiled);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->idle);
    free(c);
}

static void copy_acquire(xc_copy *c) {
    pthread_mutex_lock(&c->lock);
    while (c->busy) pthread_cond_wait(&c->idle, &c->lock);
    c->busy = true;
    pthread_mutex_unlock(&c->lock);
}

/* Done with the copy: returns the call waiting for it, which the calling thread then runs holding
 * the copy (so the next call on a copy needs no other thread woken); else lets the copy go. */
static xc_job *copy_finish(xc_copy *c) {
    pthread_mutex_lock(&c->lock);
    xc_job *next = c->waiting;
    c->waiting = NULL;
    bool destroy = false;
    if (!next) {
        c->busy = false;
        destroy = c->released;
        pthread_cond_broadcast(&c->idle);
    }
    pthread_mutex_unlock(&c->lock);
    if (destroy) copy_destroy(c);
    return next;
}

/* The copy is no longer Python's: it is freed now, or by the worker tidying it. */
void xc_copy_release(xc_copy *c) {
    pthread_mutex_lock(&c->lock);
    c->released = true;
    bool destroy = !c->busy;
    pthread_mutex_unlock(&c->lock);
    if (destroy) copy_destroy(c);
}

static void *instantiate(xc_copy *c, const char *config, uint64_t config_length, char **error) {
    char *message = NULL;
    void *plugin = extism.new_from_compiled(c->compiled, &message);
    if (!plugin) {
        *error = strdup(message ? message : "cannot instantiate the plug-in");
        if (message) extism.error_free(message);
        return NULL;
    }
    if (config_length && !extism.config(plugin, (const uint8_t *)config, config_length)) {
        extism.plugin_free(plugin);
        *error = strdup("cannot apply the plug-in's config");
        return NULL;
    }
    return plugin;
}

/* Whether the copy's instances export `function`; called by the thread holding the copy. */
static bool exports(xc_copy *c, void *plugin, const char *function) {
    if (c->known_export && strcmp(c->known_export, function) == 0) return true;
    if (!extism.function_exists(plugin, function)) return false;
    free(c->known_export);
    c->known_export = strdup(function);
    return true;
}

/* Which of the NUL-separated `names` the plug-in exports, as a bit mask (at most 64 names). */
uint64_t xc_copy_exports(xc_copy *c, const char *names, char **error) {
    copy_acquire(c);
    uint64_t found = 0;
    void *plugin = instantiate(c, NULL, 0, error);
    if (plugin) {
        int i = 0;
        for (const char *name = names; *name && i < 64; name += strlen(name) + 1, i++)
            if (extism.function_exists(plugin, name)) found |= 1ull << i;
        extism.plugin_free(plugin);
    }
    /* Python holds the copy for this, so no call can be waiting for it. */
    copy_finish(c);
    return found;
}

/* ---- jobs ---- */

xc_job *xc_job_new(xc_copy *copy, const char *function, const uint8_t *input, uint64_t input_length,
                   const char *config, uint64_t config_length, uint64_t max_output, int prepare_next,
                   xc_notifier *notifier, int notify_start) {
    xc_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->copy = copy;
    j->function = copy_bytes(function, strlen(function));
    j->input = (uint8_t *)copy_bytes(input, input_length);
    j->input_length = input_length;
    j->config = copy_bytes(config, config_length);
    j->config_length = config_length;
    j->max_output = max_output;
    j->prepare_next = prepare_next;
    j->notify_start = notify_start;
    if (!j->function || !j->input || !j->config) {
        free(j->function);
        free(j->input);
        free(j->config);
        free(j);
        return NULL;
    }
    if (notifier) {
        atomic_fetch_add(&notifier->refs, 1);
        j->notifier = notifier;
    }
    pthread_mutex_init(&j->lock, NULL);
    atomic_init(&j->state, XC_QUEUED);
    return j;
}

int xc_job_state(xc_job *j) { return atomic_load(&j->state); }

/* The job's result; valid once its state is XC_DONE or XC_SKIPPED, until xc_job_free. */
const xc_result *xc_job_result(xc_job *j) { return &j->result; }

void xc_job_free(xc_job *j) {
    /* The worker that ended the job may still be unlocking it. */
    pthread_mutex_lock(&j->lock);
    pthread_mutex_unlock(&j->lock);
    free(j->function);
    free(j->input);
    free(j->config);
    free(j->result.output);
    free(j->result.error);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Cancel the job. Returns 0 when no worker had taken it (it will never run), 1 otherwise.
 * Extism loses a cancel that lands while a call is still starting, and that call then ignores its
 * timeout as well; so a running call is only sent the cancel after `settle_ms`, and the caller
 * repeats this until the job ends. */
int xc_job_cancel(xc_job *j, double settle_ms) {
    pthread_mutex_lock(&j->lock);
    j->cancelled = true;
    int state = atomic_load(&j->state);
    if (state == XC_RUNNING && j->cancel_handle && elapsed_ms(&j->started) >= settle_ms) extism.cancel(j->cancel_handle);
    pthread_mutex_unlock(&j->lock);
    return state != XC_QUEUED;
}

/* End the job: tell Python, or, if Python has let go of it, free it and release its copy here. */
static void end(xc_job *j, int state) {
    xc_notifier *n = j->notifier;
    j->notifier = NULL;
    xc_copy *c = j->copy;
    pthread_mutex_lock(&j->lock);
    bool abandoned = j->abandoned;
    if (!abandoned) atomic_store(&j->state, state);
    pthread_mutex_unlock(&j->lock);
    /* From here on, unless abandoned, the job is Python's and may already be freed. */
    if (abandoned) {
        xc_copy_release(c);  /* destroyed at once, or when the thread holding it lets go */
        xc_job_free(j);
    }
    if (n) {
        if (!abandoned) notify(n);
        xc_notifier_release(n);
    }
}

/* Python lets go of the job (its event loop is gone): freed now if it has ended, else by whoever
 * ends it; its copy is released either way. */
void xc_job_abandon(xc_job *j) {
    pthread_mutex_lock(&j->lock);
    int state = atomic_load(&j->state);
    bool ended = state == XC_DONE || state == XC_SKIPPED;
    j->abandoned = true;
    j->cancelled = true;  /* one not taken yet never runs */
    pthread_mutex_unlock(&j->lock);
    if (ended) {
        xc_copy_release(j->copy);
        xc_job_free(j);
    }
}

/* Run a taken job, whose copy this thread holds, to its end (XC_DONE), then tidy the copy. */
static void run(xc_job *j, xc_pool *p, serving *note) {
    xc_copy *c = j->copy;
    xc_result *r = &j->result;

    void *plugin = NULL;
    if (c->spare && c->spare_config_length == j->config_length &&
        memcmp(c->spare_config, j->config, j->config_length) == 0) {
        plugin = c->spare;
        r->used_spare = 1;
    } else if (c->spare) {
        extism.plugin_free(c->spare);  /* made before a secret changed */
    }
    c->spare = NULL;
    if (!plugin) {
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        plugin = instantiate(c, j->config, j->config_length, &r->error);
        r->instantiate_ms = elapsed_ms(&start);
    }

    bool ok = false;
    if (!plugin) {
        r->stage = XC_INSTANTIATE_FAILED;
    } else if (!exports(c, plugin, j->function)) {
        r->stage = XC_NOT_FOUND;
    } else {
        pthread_mutex_lock(&j->lock);
        bool cancelled = j->cancelled;
        if (!cancelled) {
            j->cancel_handle = extism.cancel_handle(plugin);
            clock_gettime(CLOCK_MONOTONIC, &j->started);
            atomic_store(&j->state, XC_RUNNING);
        }
        pthread_mutex_unlock(&j->lock);
        if (cancelled) {
            r->stage = XC_CANCELLED_BEFORE_START;
        } else {
            r->ran = 1;
            if (j->notify_start && j->notifier) notify(j->notifier);
            int32_t rc = extism.call(plugin, j->function, j->input, j->input_length);
            r->call_ms = elapsed_ms(&j->started);
            pthread_mutex_lock(&j->lock);
            j->cancel_handle = NULL;
            pthread_mutex_unlock(&j->lock);
            const char *error = extism.error(plugin);
            if (error || rc != 0) {
                r->stage = XC_CALL_FAILED;
                r->error = strdup(error ? error : "the call failed");
            } else {
                ok = true;
                r->output_length = extism.output_length(plugin);
                if (r->output_length > j->max_output) {
                    r->output_too_large = 1;
                } else {
                    r->output = (uint8_t *)copy_bytes(extism.output_data(plugin), r->output_length);
                }
            }
            memcpy(r->plugin_id, extism.id(plugin), 16);
        }
    }

    bool prepare = ok && j->prepare_next && !shutting_down(p);
    char *config = prepare ? copy_bytes(j->config, j->config_length) : NULL;
    uint64_t config_length = j->config_length;
    pthread_mutex_lock(&p->lock);
    note->job = NULL;
    pthread_mutex_unlock(&p->lock);
    end(j, XC_DONE);

    /* The caller has its answer; what follows is off its wait. */
    if (plugin) extism.plugin_free(plugin);
    if (config) {
        pthread_mutex_lock(&c->lock);
        bool wanted = !c->released;
        pthread_mutex_unlock(&c->lock);
        char *ignored = NULL;
        void *next = wanted ? instantiate(c, config, config_length, &ignored) : NULL;
        free(ignored);  /* the next call makes its own instance and reports the error */
        free(c->spare_config);
        c->spare = next;
        c->spare_config = next ? config : NULL;
        c->spare_config_length = next ? config_length : 0;
        if (!next) free(config);
    }
}

/* Take the job for the calling thread: false if it was cancelled first. */
static bool take(xc_job *j) {
    pthread_mutex_lock(&j->lock);
    bool cancelled = j->cancelled;
    if (!cancelled) atomic_store(&j->state, XC_TAKEN);
    pthread_mutex_unlock(&j->lock);
    if (cancelled) {
        j->result.stage = XC_CANCELLED_BEFORE_START;
        end(j, XC_SKIPPED);
    }
    return !cancelled;
}

/* Run the job, then each call that waits for its copy meanwhile, on this thread. While a job is
 * being served (until its copy is let go) a note of it is on the pool's list for xc_pool_stop. */
static void serve(xc_pool *p, xc_job *j) {
    copy_acquire(j->copy);
    while (j) {
        xc_copy *c = j->copy;
        serving note = {NULL, NULL, NULL};
        bool listed = false;
        if (take(j)) {
            pthread_mutex_lock(&p->lock);
            listed = !p->shut_down;
            if (listed) {
                note.job = j;
                note.next = p->serving;
                if (p->serving) p->serving->prev = &note;
                p->serving = &note;
            }
            pthread_mutex_unlock(&p->lock);
            if (listed) {
                run(j, p, &note);
            } else {
                j->result.stage = XC_SHUT_DOWN;
                end(j, XC_SKIPPED);
            }
        }
        j = copy_finish(c);
        if (listed) {
            pthread_mutex_lock(&p->lock);
            if (note.prev) note.prev->next = note.next;
            else p->serving = note.next;
            if (note.next) note.next->prev = note.prev;
            pthread_cond_broadcast(&p->served);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

/* Run the job on the calling thread (Python releases the GIL around it), as one of the pool's
 * calls: refused after shutdown, stopped at exit. */
void xc_job_run(xc_pool *p, xc_job *j) { serve(p, j); }

/* ---- the pool ---- */

xc_pool *xc_pool_new(int max_threads) {
    xc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->served, NULL);
    p->max_threads = max_threads < 1 ? 1 : max_threads;
    return p;
}

static void *work(void *arg) {
    xc_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->shut_down) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->lock);
            p->idle--;
        }
        if (!p->head) break;
        xc_job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        serve(p, j);
        pthread_mutex_lock(&p->lock);
    }
    p->threads--;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Queue the job. One that cannot run (after shutdown, or no thread could be started) ends at once.
 * A job whose copy is still being tidied waits for the worker tidying it instead. */
void xc_pool_submit(xc_pool *p, xc_job *j) {
    xc_copy *c = j->copy;
    pthread_mutex_lock(&c->lock);
    bool handed = c->busy && !c->waiting;
    if (handed) c->waiting = j;
    pthread_mutex_unlock(&c->lock);
    if (handed) return;

    pthread_mutex_lock(&p->lock);
    int refused = p->shut_down ? XC_SHUT_DOWN : XC_OK;
    if (!refused) {
        j->next = NULL;
        if (p->tail) p->tail->next = j;
        else p->head = j;
        p->tail = j;
        p->queued++;
        if (p->idle > 0) pthread_cond_signal(&p->work);
        /* Start a thread when the idle ones are too few for the queue (a woken thread counts as idle
         * until it has taken its job, so `idle` alone would let a burst wait for one thread). */
        if (p->queued > p->idle && p->threads < p->max_threads) {
            pthread_t thread;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&thread, &attr, work, p) == 0) {
                p->threads++;
            } else if (p->threads == 0) {
                /* Nothing would ever take it; every job queued like this was taken back, so it is the only one. */
                p->head = p->tail = NULL;
                p->queued = 0;
                refused = XC_NO_WORKER;
            }
            pthread_attr_destroy(&attr);
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (refused) {
        j->result.stage = refused;
        end(j, XC_SKIPPED);
    }
}

/* Jobs not yet taken end as XC_SKIPPED (shut down); idle threads end; running jobs finish on their own. */
void xc_pool_shutdown(xc_pool *p) {
    pthread_mutex_lock(&p->lock);
    p->shut_down = true;
    xc_job *j = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    while (j) {
        xc_job *next = j->next;
        j->result.stage = XC_SHUT_DOWN;
        end(j, XC_SKIPPED);
        j = next;
    }
}

/* For the process's exit: shut down, cancel the calls running, and wait up to `wait_ms` for the
 * workers to leave Extism (whose exit handlers stop its timer thread, and crash a call still running
 * then). The cancel is repeated, as Extism loses one that lands while a call starts. Returns how
 * many calls are still running. */
int xc_pool_stop(xc_pool *p, double wait_ms, double settle_ms) {
    xc_pool_shutdown(p);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_mutex_lock(&p->lock);
    while (p->serving && elapsed_ms(&start) < wait_ms) {
        for (serving *s = p->serving; s; s = s->next)
            if (s->job) xc_job_cancel(s->job, settle_ms);
        struct timespec retry;
        clock_gettime(CLOCK_REALTIME, &retry);
        retry.tv_nsec += 10 * 1000000;
        if (retry.tv_nsec >= 1000000000) {
            retry.tv_sec++;
            retry.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->served, &p->lock, &retry);
    }
    int left = 0;
    for (serving *s = p->serving; s; s = s->next) left++;
    pthread_mutex_unlock(&p->lock);
    return left;
}

/* How many threads the pool has started and not yet ended. */
int xc_pool_threads(xc_pool *p) {
    pthread_mutex_lock(&p->lock);
    int threads = p->threads;
    pthread_mutex_unlock(&p->lock);
    return threads;
}
