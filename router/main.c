/* afd-router: the OpenAI-compatible router. `afd-router --help` lists the settings. */
#include <stdio.h>

#include "common/base/log.h"
#include "common/base/notify.h"
#include "router/router.h"

int main(int argc, char **argv) {
    router_cfg cfg = {0};
    afd_err err = {0};
    afd_notify_init();
    afd_log_init("afd-router", AFD_LOG_INFO, AFD_LOG_JSON);
    int rc = conf_load(&router_conf, &cfg, argc, argv, &err);
    if (rc == CONF_HELP)
        return 0;
    if (rc) {
        fprintf(stderr, "afd-router: %s\n", err.msg);
        return 2;
    }
    afd_log_init("afd-router", cfg.log_level, cfg.log_json ? AFD_LOG_JSON : AFD_LOG_TEXT);
    conf_log_effective(&router_conf, &cfg);
    router *r;
    if ((rc = router_init(&r, &cfg, &err))) {
        log_error("afd-router: %s", err.msg);
        conf_free(&router_conf, &cfg);
        return 1;
    }
    rc = router_run(r);
    router_free(r);
    conf_free(&router_conf, &cfg);
    return rc ? 1 : 0;
}
