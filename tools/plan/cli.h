/* cli.h: afd-plan's subcommands and the option helpers they share (internal to the binary).
 *
 * Each cmd_* takes the arguments after the subcommand name and returns the process exit code:
 * 0 success, 2 bad usage or input (with one "afd-plan: ..." line on stderr), 1 no solution.
 */
#ifndef AFD_PLAN_CLI_H
#define AFD_PLAN_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "tools/plan/hw.h"
#include "tools/plan/model.h"

int cmd_cost(int argc, char **argv);
int cmd_sparsity(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_hardware(int argc, char **argv);

/* Prints "afd-plan: <message>" to stderr; returns 2. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Numbers from the command line: "8192", "8k" (x1024) for counts, plain decimals otherwise.
 * 0, or -1 after printing which option is wrong. */
int cli_long(const char *opt, const char *s, long lo, long hi, long *out);
int cli_double(const char *opt, const char *s, double lo, double hi, double *out);
/* Loads the model (required) and the hardware table (built-in plus optional file). */
int cli_load_model(const char *path, plan_model *m);
int cli_load_hw(const char *path, plan_hw_table *t);
/* Writes obj to stdout as one JSON document and releases it. */
int cli_print_json(json_t *obj);
/* A number for JSON output: an integer when v is integral (counts stay exact), a real
 * otherwise, null when not finite. */
json_t *cli_num(double v);

#endif
