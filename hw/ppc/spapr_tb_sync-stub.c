/*
 * pseries timebase migration: the monitor commands of a ppc64 build
 * without the pseries machine.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-ppc-timebase-target.h"
#include "monitor/hmp-target.h"
#include "monitor/hmp.h"

PpcTimebaseInfo *qmp_query_ppc_timebase(Error **errp)
{
    error_setg(errp, "query-ppc-timebase needs a pseries machine, and this "
               "QEMU was built without one");
    return NULL;
}

void hmp_info_timebase(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;

    qmp_query_ppc_timebase(&err);
    hmp_handle_error(mon, err);
}
