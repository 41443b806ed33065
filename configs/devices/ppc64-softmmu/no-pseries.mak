# SPDX-License-Identifier: GPL-2.0-or-later
#
# A ppc64 build without the pseries machine (configure
# --with-devices-ppc64=no-pseries): what the timebase migration's
# monitor commands fall back to (hw/ppc/spapr_tb_sync-stub.c) must link.

include default.mak

CONFIG_PSERIES=n
