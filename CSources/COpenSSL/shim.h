#ifndef RINGCAST_COPENSSL_SHIM_H
#define RINGCAST_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif
