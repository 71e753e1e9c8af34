/* portfile.h: the small JSON file a daemon writes once it listens, so that scripts and tests
 * that start it with ephemeral ports (port 0) learn them: {"data_port":N,"admin_port":M,
 * "pid":P}. Written to PATH.tmp and renamed, so a reader never sees half a file. */
#ifndef AFD_PORTFILE_H
#define AFD_PORTFILE_H

#include "common/base/err.h"

/* path NULL or "": nothing to do. 0, or -errno with *err naming the file. */
int afd_port_file_write(const char *path, int data_port, int admin_port, afd_err *err);

#endif
