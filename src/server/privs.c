/*
 * privs.c - what a child of `sotto serve` gives up once it no longer needs
 * it: root, for the --user account (the gateway after binding its ports,
 * a worker after mapping the model), and for a worker, the network.
 *
 * A worker only ever talks over the socketpair it inherited; a network
 * namespace of its own (empty: not even a loopback that is up) means that
 * code that goes wrong in it, a decoder fed a hostile file say, cannot
 * reach any other host or local service.  That takes root
 * (CAP_SYS_ADMIN); without it the worker says so and runs as it is.
 */
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

int sotto__drop_privileges(const sotto__serve_config *c)
{
    if (c->user[0] == 0 || geteuid() != 0)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid((gid_t)c->user_gid) != 0 ||
        setuid((uid_t)c->user_uid) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot become user %s: %s", c->user, strerror(errno));
        return -1;
    }
    /* Root must not be regained. */
    if (setuid(0) == 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "could become root again after dropping to %s",
                   c->user);
        return -1;
    }
    sotto__log(SOTTO_LOG_DEBUG, 0, "running as %s (uid %d)", c->user, c->user_uid);
    return 0;
}

void sotto__isolate_network(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        sotto__log(geteuid() == 0 ? SOTTO_LOG_WARN : SOTTO_LOG_DEBUG, 0,
                   "no network namespace of its own (%s): the worker keeps the "
                   "host's network", strerror(errno));
}
