/* err.h: the one error convention of afd.
 *
 * Every fallible function returns int: 0 on success, negative on error. Negative errno values
 * (-ENOMEM, -EINVAL, -EIO, ...) are used as they are; afd's own conditions have codes below
 * AFD_E_BASE. "Not ready, call again" (AFD_E_AGAIN) and "not mine, pass on" (AFD_E_NOTMINE) are
 * named codes, not errors to log.
 *
 * Functions that can fail for reasons a human must read (a hostile checkpoint, a bad config)
 * also take an afd_err *, filled with a one-line message that names the file, tensor, key or
 * field at fault. afd_errf() sets it and returns the code, so a failure path is one line:
 *     return afd_errf(err, AFD_E_FORMAT, "%s: tensor %s: offsets out of range", path, name);
 * An afd_err * may be NULL. Thread-safe: no global state.
 */
#ifndef AFD_ERR_H
#define AFD_ERR_H

#include <stddef.h>

enum {
    AFD_OK = 0,
    AFD_E_BASE = -10000,
    AFD_E_FORMAT = -10001,      /* malformed input: file, frame, JSON, config value */
    AFD_E_LIMIT = -10002,       /* a size or count over its limit */
    AFD_E_AGAIN = -10003,       /* not ready, call again */
    AFD_E_NOTMINE = -10004,     /* not mine, pass on */
    AFD_E_MISMATCH = -10005,    /* model, shard or protocol mismatch */
    AFD_E_UNSUPPORTED = -10006, /* valid but not supported (dtype, ISA, feature) */
    AFD_E_NOTFOUND = -10007,    /* a named thing (tensor, key, file) is missing */
    AFD_E_SHAPE = -10008,       /* a tensor has the wrong shape or dtype */
    AFD_E_STATE = -10009,       /* call not valid in the object's current state */
    AFD_E_PEER = -10010,        /* a peer refused us, failed or went away */
};

typedef struct afd_err {
    int code;
    char msg[512];
} afd_err;

/* Human-readable name of a code (never NULL). Handles -errno too. */
const char *afd_strerror(int code);

/* Formats msg into *err (if err != NULL) and returns code. */
int afd_errf(afd_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
