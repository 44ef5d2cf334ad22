/*
 * The native call pool's interface. calls.c implements it; sandbox/native/__init__.py gives this
 * file, less its # lines, to cffi as its declarations, so the two sides cannot drift apart.
 */
#ifndef EXOCLAW_CALLS_H
#define EXOCLAW_CALLS_H

#include <stdint.h>

/* A job's state. */
enum xc_state { XC_QUEUED, XC_TAKEN, XC_RUNNING, XC_DONE, XC_SKIPPED };

/* How a job ended. */
enum xc_stage {
    XC_OK,
    XC_INSTANTIATE_FAILED,
    XC_NOT_FOUND,
    XC_CALL_FAILED,
    XC_CANCELLED_BEFORE_START,
    XC_SHUT_DOWN,
    XC_NO_WORKER
};

/* What Python reads once a job has ended. */
typedef struct {
    int32_t stage;
    int32_t ran;
    int32_t used_spare;
    int32_t output_too_large;
    double instantiate_ms;
    double call_ms;
    uint64_t output_length;
    uint8_t *output;
    char *error;
    uint8_t plugin_id[16];
} xc_result;

typedef struct xc_notifier xc_notifier;
typedef struct xc_copy xc_copy;
typedef struct xc_job xc_job;
typedef struct xc_pool xc_pool;

int xc_load(const char *library);
void xc_free(void *pointer);

xc_notifier *xc_notifier_new(void);
int xc_notifier_fd(xc_notifier *n);
void xc_notifier_release(xc_notifier *n);

xc_copy *xc_copy_new(void *compiled);
void xc_copy_release(xc_copy *c);
uint64_t xc_copy_exports(xc_copy *c, const char *names, char **error);

xc_job *xc_job_new(xc_copy *copy, const char *function, const uint8_t *input, uint64_t input_length,
                   const char *config, uint64_t config_length, uint64_t max_output, int prepare_next,
                   xc_notifier *notifier, int notify_start);
int xc_job_state(xc_job *j);
const xc_result *xc_job_result(xc_job *j);
void xc_job_free(xc_job *j);
int xc_job_cancel(xc_job *j, double settle_ms);
void xc_job_run(xc_pool *p, xc_job *j);
void xc_job_abandon(xc_job *j);

xc_pool *xc_pool_new(int max_threads);
void xc_pool_submit(xc_pool *p, xc_job *j);
void xc_pool_shutdown(xc_pool *p);
int xc_pool_stop(xc_pool *p, double wait_ms, double settle_ms);
int xc_pool_threads(xc_pool *p);

#endif
