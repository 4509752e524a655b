#ifndef RINGCAST_CLIBURING_SHIM_H
#define RINGCAST_CLIBURING_SHIM_H
#include <liburing.h>
#endif
