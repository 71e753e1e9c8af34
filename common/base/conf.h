/* conf.h: one table of settings per daemon drives the config file, the command line, --help
 * and the effective-config log line.
 *
 * A daemon describes its settings as rows of data (name, type, offset into its config struct,
 * bounds, default, help) and calls conf_load() once at start-up. Precedence, lowest first:
 * the table default -> the JSON file named by --config FILE -> command-line flags.
 * Files use the names as written in the table ("listen_port"); flags accept --listen-port and
 * --listen_port, "--name value" or "--name=value"; booleans are --name / --no-name (or
 * --name=true|false). Unknown keys and flags are errors (with "did you mean" when close), so a
 * typo never passes silently. docs/config.md describes the formats in full.
 *
 * Ownership: conf_load overwrites every field the table names (without freeing what was
 * there) and owns the CONF_STR strings and CONF_STRLIST arrays it stores; conf_free releases
 * them and zeroes the pointers (calling it twice is safe). Whatever conf_load returns (bar a
 * table error), the fields are initialised and conf_free is safe; on error the strings are
 * already released. Fields the table does not name are never touched.
 * Errors: 0 / negative AFD_E_* with a one-line message in *err naming the flag or file and
 * key, the value and the bound at fault. Thread-safety: none needed (start-up only); the
 * functions keep no global state.
 */
#ifndef AFD_CONF_H
#define AFD_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/base/err.h"

/* The C type of the field at `offset` is given for each. */
typedef enum {
    CONF_BOOL,    /* bool */
    CONF_INT,     /* int */
    CONF_I64,     /* int64_t */
    CONF_SIZE,    /* uint64_t bytes: 4096, "512k", "8gb", "8GiB", "1.5g" (k = 1024) */
    CONF_DOUBLE,  /* double (finite) */
    CONF_MS,      /* int64_t milliseconds: 250 (bare = ms), "50ms", "2s", "1.5m", "1h" */
    CONF_US,      /* int64_t microseconds: 200 (bare = us), "200us", "1.5ms", "1s" */
    CONF_STR,     /* char *, owned (NULL when unset) */
    CONF_ENUM,    /* int: index into choices[] */
    CONF_STRLIST, /* char ** (NULL-terminated, owned) + int count at count_offset; JSON array
                     of strings in files, comma-separated list on the command line */
} conf_type;

enum {
    CONF_REQUIRED = 1u << 0,   /* must be set by the file or a flag (needs def == NULL) */
    CONF_SECRET = 1u << 1,     /* value masked as "***" in logs and dumps */
    CONF_POSITIONAL = 1u << 2, /* takes the positional arguments: a CONF_STR takes one, a
                                  CONF_STRLIST all of them. At most one option has it; without
                                  it, a positional argument is an error. */
};

typedef struct conf_opt {
    const char *name;  /* [a-z0-9_]+: the file key; --name-with-dashes on the command line */
    conf_type type;
    size_t offset;     /* offsetof(struct my_cfg, field) */
    double min, max;   /* inclusive bounds for numbers (sizes and durations in their stored
                          unit); min == max == 0: unbounded (beyond the C type's range) */
    const char *def;   /* default as text, parsed like user input; NULL: 0 / false / NULL /
                          empty list */
    const char *help;  /* one line */
    const char *const *choices; /* CONF_ENUM: NULL-terminated */
    size_t count_offset;        /* CONF_STRLIST: offsetof the int count */
    unsigned flags;             /* CONF_REQUIRED | CONF_SECRET | CONF_POSITIONAL */
} conf_opt;

typedef struct conf_table {
    const char *prog;           /* "ffnd" */
    const char *summary;        /* one line for --help */
    const char *usage_examples; /* printed after the options, verbatim; may be NULL */
    const conf_opt *opts;
    int n_opts;
} conf_table;

/* Positive return of conf_load: --help / -h was printed to stdout; the caller exits 0. */
#define CONF_HELP 1

/* Largest config file accepted, in bytes. */
#define CONF_FILE_MAX (1u << 20)

/* Fills cfg from the defaults, then --config FILE, then the flags in argv[1..argc-1] ("--"
 * ends the flags). Returns 0, CONF_HELP, or a negative AFD_E_* with *err: AFD_E_FORMAT for a
 * bad value, key, flag or table, AFD_E_LIMIT for a value out of bounds or a file over
 * CONF_FILE_MAX, AFD_E_NOTFOUND for an unreadable file or a missing required setting. */
int conf_load(const conf_table *t, void *cfg, int argc, char **argv, afd_err *err);

/* Frees the strings and lists conf_load stored and sets them to NULL / 0. */
void conf_free(const conf_table *t, void *cfg);

/* Usage, summary, one entry per option (flag, type, default, bounds or choices, help), then
 * the examples. */
void conf_print_help(const conf_table *t, FILE *f);

/* One info log line "effective config {...}" with every setting (secrets masked); split in
 * parts of whole keys if the object is too long for one log message. */
void conf_log_effective(const conf_table *t, const void *cfg);

/* The settings as a JSON object text (malloc'd; caller frees), usable as a --config file when
 * no secret is masked. mask_secrets != 0 writes "***" for CONF_SECRET values. */
char *conf_dump_json(const conf_table *t, const void *cfg, int mask_secrets);

/* Validates a config file against the table without storing anything (required settings
 * are not checked: flags may supply them). 0 or negative with *err, as conf_load. */
int conf_check_file(const conf_table *t, const char *path, afd_err *err);

/* Parses a size into bytes: digits with an optional fraction, optional spaces, an optional
 * unit b, k, m, g, t, p, e (powers of 1024), each also as kb/kib (any case). The result must
 * be a whole number of bytes. 0, AFD_E_FORMAT (syntax, sign, unknown unit, fraction of a byte)
 * or AFD_E_LIMIT (over UINT64_MAX). */
int conf_parse_size(const char *s, uint64_t *out);

/* Parses a duration into a whole number of `unit_ns` units (1000000 for ms, 1000 for us): a
 * number with an optional fraction, optional spaces, an optional unit ns, us, ms, s, m (or min),
 * h, d; a bare number is in `unit_ns` units. 0, AFD_E_FORMAT (syntax, sign, unknown unit, not
 * a whole number of units) or AFD_E_LIMIT (over INT64_MAX units). */
int conf_parse_duration(const char *s, int64_t unit_ns, int64_t *out);

#endif
