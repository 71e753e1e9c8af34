#include "common/base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *afd_strerror(int code) {
    switch (code) {
    case AFD_OK: return "ok";
    case AFD_E_FORMAT: return "malformed input";
    case AFD_E_LIMIT: return "over limit";
    case AFD_E_AGAIN: return "not ready, call again";
    case AFD_E_NOTMINE: return "not mine";
    case AFD_E_MISMATCH: return "mismatch";
    case AFD_E_UNSUPPORTED: return "unsupported";
    case AFD_E_NOTFOUND: return "not found";
    case AFD_E_SHAPE: return "wrong shape or dtype";
    case AFD_E_STATE: return "invalid state";
    case AFD_E_PEER: return "peer failed";
    default: break;
    }
    if (code < 0 && code > AFD_E_BASE)
        return strerror(-code);
    return "unknown error";
}

int afd_errf(afd_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}
