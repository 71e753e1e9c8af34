/* attnd: the attention daemon. `attnd --help` lists the settings (attnd/config.c). */
#include <stdio.h>

#include "attnd/attnd.h"
#include "common/base/log.h"
#include "common/base/notify.h"

int main(int argc, char **argv) {
    attnd_cfg cfg = {0};
    afd_err err = {0};
    afd_notify_init();
    afd_log_init("attnd", AFD_LOG_INFO, AFD_LOG_JSON);
    int rc = conf_load(&attnd_conf, &cfg, argc, argv, &err);
    if (rc == CONF_HELP)
        return 0;
    if (rc) {
        fprintf(stderr, "attnd: %s\n", err.msg);
        return 2;
    }
    afd_log_init("attnd", cfg.log_level, cfg.log_json ? AFD_LOG_JSON : AFD_LOG_TEXT);
    conf_log_effective(&attnd_conf, &cfg);
    attnd *d;
    if ((rc = attnd_init(&d, &cfg, &err))) {
        log_error("attnd: %s", err.msg);
        conf_free(&attnd_conf, &cfg);
        return 1;
    }
    afd_notify_ready("serving: weights loaded, FFN group connected");
    rc = attnd_run(d);
    attnd_free(d);
    conf_free(&attnd_conf, &cfg);
    return rc ? 1 : 0;
}
