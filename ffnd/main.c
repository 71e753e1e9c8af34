/* ffnd: the MoE FFN daemon. `ffnd --help` lists the settings (ffnd/config.c). */
#include <stdio.h>

#include "common/base/log.h"
#include "common/base/notify.h"
#include "ffnd/ffnd.h"

int main(int argc, char **argv) {
    ffnd_cfg cfg = {0};
    afd_err err = {0};
    afd_notify_init();
    afd_log_init("ffnd", AFD_LOG_INFO, AFD_LOG_JSON);
    int rc = conf_load(&ffnd_conf, &cfg, argc, argv, &err);
    if (rc == CONF_HELP)
        return 0;
    if (rc) {
        fprintf(stderr, "ffnd: %s\n", err.msg);
        return 2;
    }
    afd_log_init("ffnd", cfg.log_level, cfg.log_json ? AFD_LOG_JSON : AFD_LOG_TEXT);
    conf_log_effective(&ffnd_conf, &cfg);
    ffnd *d;
    if ((rc = ffnd_init(&d, &cfg, &err))) {
        log_error("ffnd: %s", err.msg);
        conf_free(&ffnd_conf, &cfg);
        return 1;
    }
    afd_notify_ready("serving (listening)");
    rc = ffnd_run(d);
    ffnd_free(d);
    conf_free(&ffnd_conf, &cfg);
    return rc ? 1 : 0;
}
