#include "common/net/portfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int afd_port_file_write(const char *path, int data_port, int admin_port, afd_err *err) {
    if (!path || !*path)
        return 0;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return afd_errf(err, -errno, "port file %s: %s", tmp, strerror(errno));
    fprintf(f, "{\"data_port\": %d, \"admin_port\": %d, \"pid\": %d}\n", data_port, admin_port,
            (int)getpid());
    if (fclose(f) || rename(tmp, path))
        return afd_errf(err, -errno, "port file %s: %s", path, strerror(errno));
    return 0;
}
